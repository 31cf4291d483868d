"""`gossamer inject` against hostile folders and files, as a separate process (issue 17,
finding 11): a `.gossamer` symbolic link (or one inside it) is refused with nothing
written anywhere, deeply nested compose files get one clear line instead of a
traceback, and a file of many services is bootstrapped with one write of the token
store."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.helpers.compose import run_cli

pytestmark = pytest.mark.e2e

COMPOSE = "services:\n  web:\n    image: nginx\n    ports: ['8080:80']\n"


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("link", [".gossamer", ".gossamer/ca", ".gossamer/tokens"])
def test_a_symbolic_link_in_the_bootstrap_folder_is_refused(tmp_path: Path, link: str):
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    (project / "compose.yaml").write_text(COMPOSE)
    if link != ".gossamer":
        (project / ".gossamer").mkdir(mode=0o700)
    (project / link).symlink_to(elsewhere)
    before = _tree(project)
    result = run_cli("inject", "compose.yaml", cwd=project)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "is a symbolic link" in result.stderr and "Traceback" not in result.stderr
    assert f"{link} is a symbolic link" in result.stderr
    assert _tree(elsewhere) == []  # no CA key, no token outside the folder
    assert _tree(project) == before  # and no compose.meshed.yaml either


def test_a_linked_token_file_is_refused(tmp_path: Path):
    """A link planted where a token file goes (from an earlier inject's folder)."""
    (tmp_path / "compose.yaml").write_text(COMPOSE)
    assert run_cli("inject", "compose.yaml", cwd=tmp_path).returncode == 0
    token = tmp_path / ".gossamer" / "tokens" / "web.token"
    token.unlink()
    outside = tmp_path / "outside.txt"
    outside.write_text("")
    token.symlink_to(outside)
    (tmp_path / "compose.meshed.yaml").unlink()
    result = run_cli("inject", "compose.yaml", cwd=tmp_path)
    assert result.returncode == 1 and "is a symbolic link" in result.stderr
    assert outside.read_text() == "" and not (tmp_path / "compose.meshed.yaml").exists()


def _deep_block(depth: int) -> str:
    return "services:\n  web:\n    image: x\n    x-deep:\n      " + "- " * depth + "x\n"


def _deep_flow(depth: int) -> str:
    return "services:\n  web:\n    image: x\n    x-deep: " + "[" * depth + "]" * depth + "\n"


def _deep_mapping(depth: int) -> str:
    lines = ["services:", "  web:", "    image: x", "    labels:"]
    lines += [" " * (6 + 2 * i) + f"k{i}:" for i in range(depth)]
    return "\n".join(lines) + " 1\n"


@pytest.mark.parametrize("make", [_deep_block, _deep_flow, _deep_mapping])
@pytest.mark.parametrize("depth", [100, 2000])
def test_deep_nesting_is_one_clear_error(tmp_path: Path, make, depth: int):
    (tmp_path / "compose.yaml").write_text(make(depth))
    result = run_cli("inject", "compose.yaml", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "RecursionError" not in result.stderr
    assert "nested" in result.stderr and "64 levels" in result.stderr, result.stderr
    assert result.stderr.count("\n") <= 2  # one line (and a hint at most)
    assert _tree(tmp_path) == ["compose.yaml"]


def test_many_services_are_bootstrapped_with_one_token_store_write(tmp_path: Path):
    """Tokens are made in bulk: `tokens.json` is written once (its inode changes with
    every atomic write, so a per-token write leaves the store rewritten N times)."""
    services = 200
    lines = ["services:"]
    for i in range(services):
        lines += [f"  s{i}:", "    image: nginx", "    expose: ['80']"]
    (tmp_path / "compose.yaml").write_text("\n".join(lines) + "\n")
    probe = tmp_path / "count_writes.py"
    probe.write_text(
        "import runpy, sys\n"
        "import gossamer.fsutil as f\n"
        "import gossamer.certs.tokens as t\n"
        "count = {'n': 0}\n"
        "real = t.atomic_write\n"
        "def counting(path, data, **kw):\n"
        "    count['n'] += str(path).endswith('tokens.json')\n"
        "    real(path, data, **kw)\n"
        "t.atomic_write = counting\n"
        "sys.argv = ['gossamer', 'inject', 'compose.yaml']\n"
        "try:\n"
        "    runpy.run_module('gossamer.cli.main', run_name='__main__')\n"
        "finally:\n"
        "    open('writes.txt', 'w').write(str(count['n']))\n"
    )
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, str(probe)], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "writes.txt").read_text() == "1"
    store = json.loads((tmp_path / ".gossamer" / "ca" / "tokens.json").read_text())
    assert len(store["tokens"]) == services
    tokens = list((tmp_path / ".gossamer" / "tokens").iterdir())
    assert len(tokens) == services
    assert all(os.stat(p).st_size > 0 for p in tokens)
    # again: every token is kept, nothing rewritten
    again = run_cli("inject", "compose.meshed.yaml", cwd=tmp_path, timeout=300)
    assert again.returncode == 0, again.stderr
    assert len(json.loads((tmp_path / ".gossamer/ca/tokens.json").read_text())["tokens"]) == 200
