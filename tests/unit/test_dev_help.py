"""`./dev --help` and `./dev CMD --help` print usage and exit 0 without doing anything.

The script is copied into an empty folder and run with a PATH that holds only the few
tools usage needs (bash, sed, grep, dirname): an entry point that went on to install
packages, build a venv or start Docker would fail for want of its tools, or leave files
next to the copy, and the test would see it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

DEV = Path(__file__).resolve().parents[2] / "dev"


def dev_commands() -> list[str]:
    """The commands of dev's case statement (every `    name)` arm but the catch-all)."""
    text = DEV.read_text()
    body = text[text.rindex('case "$cmd" in') :]
    return re.findall(r"^    ([a-z]+)\)", body, flags=re.M)


@pytest.fixture
def sandbox(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    home = tmp_path / "checkout"
    home.mkdir()
    shutil.copy2(DEV, home / "dev")
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("bash", "sed", "grep", "dirname"):
        found = shutil.which(tool)
        assert found, tool
        (tools / tool).symlink_to(found)
    env = {"PATH": str(tools), "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    return home, env


def run_dev(sandbox: tuple[Path, dict[str, str]], *args: str) -> subprocess.CompletedProcess[str]:
    home, env = sandbox
    return subprocess.run(
        [str(home / "dev"), *args], env=env, capture_output=True, text=True, timeout=30
    )


def test_the_case_statement_is_read():
    assert {"setup", "lint", "test", "docker", "bench", "fuzz", "protos", "up"} <= set(
        dev_commands()
    )


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_top_level_help(sandbox, flag):
    result = run_dev(sandbox, flag)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: ./dev")
    for command in dev_commands():
        assert f"./dev {command}" in result.stdout, command
    assert os.listdir(sandbox[0]) == ["dev"]


@pytest.mark.parametrize("command", dev_commands())
def test_each_command_help_prints_usage_only(sandbox, command):
    result = run_dev(sandbox, command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:")
    assert f"./dev {command}" in result.stdout
    assert result.stderr == ""
    assert os.listdir(sandbox[0]) == ["dev"], "the help run left files behind"


def test_the_sandbox_would_catch_an_action(sandbox):
    # without --help, `lint` goes to setup_python, which needs python: it fails here
    result = run_dev(sandbox, "lint")
    assert result.returncode != 0
