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


def test_every_registered_command_help_works():
    import importlib.util

    for name, (module, _attr, _help) in COMMANDS.items():
        if importlib.util.find_spec(module) is None:
            continue
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
