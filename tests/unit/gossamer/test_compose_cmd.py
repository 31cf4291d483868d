"""`gossamer inject` / `gossamer uninject` as a user runs them: separate processes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers.compose import SAMPLES, plain, run_cli


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copyfile(SAMPLES / "nginx-flask-mysql.yaml", tmp_path / "compose.yaml")
    return tmp_path


def test_inject_check_then_uninject(project: Path):
    original = (project / "compose.yaml").read_bytes()
    result = run_cli("inject", "compose.yaml", "--with-observability", "--check", cwd=project)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "meshed 3 service(s) (transparent mode): db, backend, proxy" in result.stderr
    assert "checks passed" in result.stderr
    assert "wrote compose.meshed.yaml" in result.stderr
    meshed = project / "compose.meshed.yaml"
    assert "backend-proxy" in plain(meshed.read_text())["services"]
    again = run_cli("inject", "compose.meshed.yaml", "--with-observability", cwd=project)
    assert again.returncode == 0 and "already up to date" in again.stderr
    back = run_cli("uninject", "compose.meshed.yaml", "-o", "restored.yaml", cwd=project)
    assert back.returncode == 0, back.stderr
    assert (project / "restored.yaml").read_bytes() == original


def test_stdout_output_is_only_yaml(project: Path):
    result = run_cli("inject", "compose.yaml", "-o", "-", "--mode", "explicit", cwd=project)
    assert result.returncode == 0, result.stderr
    data = plain(result.stdout)
    assert data["x-gossamer"]["mode"] == "explicit"
    assert not (project / "compose.meshed.yaml").exists()
    restored = run_cli("uninject", "-", cwd=project)  # not a file: a clear error
    assert restored.returncode == 1 and "Traceback" not in restored.stderr


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("services:\n  web:\n    image: [oops\n", "compose.yaml:"),
        ("- web\n- db\n", "top level is a list"),
        ("services:\n  - web\n", "`services` must be a mapping"),
        ("apiVersion: v1\nkind: Pod\n", "unknown top-level key 'apiVersion'"),
        ("services:\n  web:\n    image: w\n    x-gossamer: {mesh: 3}\n", "compose.yaml:4"),
    ],
)
def test_bad_input_is_one_clear_line_and_nothing_written(tmp_path: Path, text: str, needle: str):
    (tmp_path / "compose.yaml").write_text(text)
    result = run_cli("inject", "compose.yaml", cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and needle in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["compose.yaml"]


def test_usage_mistakes(project: Path):
    result = run_cli("inject", "compose.yaml", "--only", "nope", cwd=project)
    assert result.returncode == 2 and "no such service" in result.stderr
    assert "hint: services: db, backend, proxy" in result.stderr
    result = run_cli("inject", "compose.yaml", "--in-place", "-o", "x.yaml", cwd=project)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    result = run_cli("inject", "missing.yaml", cwd=project)
    assert result.returncode == 1 and "file not found" in result.stderr
    result = run_cli("uninject", "compose.yaml", cwd=project)
    assert result.returncode == 1 and "not an injected file" in result.stderr
    assert sorted(p.name for p in project.iterdir()) == ["compose.yaml"]


def test_only_and_exclude_from_the_command_line(project: Path):
    result = run_cli("inject", "compose.yaml", "--exclude", "db,proxy", "-o", "-", cwd=project)
    assert result.returncode == 0, result.stderr
    services = plain(result.stdout)["services"]
    assert "backend-proxy" in services and "db-proxy" not in services
    assert "left alone: db (listed in --exclude)" in result.stderr
    result = run_cli("inject", "compose.yaml", "--only", "db", "-o", "-", cwd=project)
    assert [n for n in plain(result.stdout)["services"] if n.endswith("-proxy")] == ["db-proxy"]
