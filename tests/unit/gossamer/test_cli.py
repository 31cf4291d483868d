"""The CLI shell: help, version, and one-line errors without tracebacks."""

from __future__ import annotations

import pytest

from gossamer.cli.main import COMMANDS, main
from tests.helpers.procs import run_gossamer


def test_help_lists_available_commands():
    result = run_gossamer("--help")
    assert result.returncode == 0
    assert "service mesh for Docker Compose" in result.stdout


def test_version():
    result = run_gossamer("--version")
    assert result.returncode == 0 and "gossamer" in result.stdout


def test_unknown_command_is_one_clear_error():
    result = run_gossamer("no-such-command")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "No such command" in result.stderr


def registration_problems(commands: dict[str, tuple[str, str, str]]) -> list[str]:
    """What is wrong with a command table: a module that does not import, or an
    attribute that is not a click command (empty when every entry is sound)."""
    import importlib

    import click

    problems = []
    for name, (module, attr, _help) in commands.items():
        try:
            command = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            problems.append(f"{name}: {module}.{attr}: {exc}")
            continue
        if not isinstance(command, click.Command):
            problems.append(f"{name}: {module}.{attr} is not a click command")
    return problems


def test_every_registered_command_imports_and_is_listed():
    assert registration_problems(COMMANDS) == []
    listed = run_gossamer("--help")
    assert listed.returncode == 0
    for name in COMMANDS:
        assert f"  {name} " in listed.stdout, name


def test_a_registered_command_without_its_module_is_a_problem():
    # the check above can fail: a registered name whose module is missing is reported
    table = {"ghost": ("gossamer.cli.no_such_cmd", "ghost", "Missing module.")}
    table |= {"odd": ("gossamer.cli.main", "COMMANDS", "Not a command.")}
    problems = registration_problems(table)
    assert len(problems) == 2
    assert problems[0].startswith("ghost: gossamer.cli.no_such_cmd.ghost")
    assert "not a click command" in problems[1]


def test_every_registered_command_help_works():
    for name in COMMANDS:
        result = run_gossamer(name, "--help")
        assert result.returncode == 0, (name, result.stderr)
        assert "Traceback" not in result.stderr


def test_gossamer_error_exit_code(monkeypatch, capsys):
    from gossamer.errors import ConfigError

    def boom(*a, **k):
        raise ConfigError("bad value", field="x", source="f.yaml", line=3, hint="fix it")

    monkeypatch.setattr("gossamer.cli.main.cli.main", boom)
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert "error: f.yaml:3: x: bad value" in err and "hint: fix it" in err
