"""`gossamer doctor` and `gossamer inject --check` as a user runs them: against the real
Docker Engine here (marker `docker`: it must be running, 25 or later), and against an
older or missing one simulated by a fake `docker` first on PATH."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.compose import SAMPLES, run_cli

pytestmark = pytest.mark.e2e

# `docker version --format '{{json .}}'` of Debian 12's docker.io (20.10, API 1.41)
ENGINE_20_10 = {
    "Client": {
        "Platform": {"Name": ""},
        "Version": "20.10.24+dfsg1",
        "ApiVersion": "1.41",
        "DefaultAPIVersion": "1.41",
        "GitCommit": "297e128",
        "GoVersion": "go1.19.8",
        "Os": "linux",
        "Arch": "amd64",
        "Context": "default",
        "Experimental": True,
    },
    "Server": {
        "Platform": {"Name": ""},
        "Components": [
            {
                "Name": "Engine",
                "Version": "20.10.24+dfsg1",
                "Details": {"ApiVersion": "1.41", "MinAPIVersion": "1.12", "Os": "linux"},
            }
        ],
        "Version": "20.10.24+dfsg1",
        "ApiVersion": "1.41",
        "MinAPIVersion": "1.12",
        "GitCommit": "5d6db84",
        "GoVersion": "go1.19.8",
        "Os": "linux",
        "Arch": "amd64",
        "KernelVersion": "6.1.0-18-amd64",
    },
}
DAEMON_DOWN = (
    "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
    "Is the docker daemon running?"
)

FAKE = """#!{python}
import os, sys
args = sys.argv[1:]
if args[:1] == ["version"]:
    sys.stdout.write({stdout!r})
    sys.stderr.write({stderr!r})
    sys.exit({code})
if args[:2] == ["compose", "version"]:
    sys.stdout.write({compose!r})
    sys.exit(0)
sys.exit("fake docker: not simulated: " + " ".join(args))
"""


def fake_docker(folder: Path, *, stdout: str, stderr: str = "", code: int = 0) -> dict[str, str]:
    """An environment whose PATH starts with a fake `docker` (Compose 2.26.1)."""
    folder.mkdir()
    script = folder / "docker"
    script.write_text(
        FAKE.format(
            python=sys.executable, stdout=stdout, stderr=stderr, code=code, compose="2.26.1\n"
        )
    )
    script.chmod(0o755)
    return {**os.environ, "PATH": f"{folder}{os.pathsep}{os.environ.get('PATH', '')}"}


def gossamer(*args: str, cwd: Path, env: dict[str, str] | None = None):
    return run_cli(*args, cwd=cwd, env=env, timeout=120)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    shutil.copyfile(SAMPLES / "nginx-flask-mysql.yaml", folder / "compose.yaml")
    return folder


def require_engine() -> None:
    """Fail (never skip) when the engine that ./dev docker starts is not answering."""
    if shutil.which("docker") is None:
        pytest.fail("no docker command: run ./dev docker first")
    done = subprocess.run(["docker", "version"], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        pytest.fail(f"the Docker Engine does not answer (./dev docker starts it): {done.stderr}")


@pytest.mark.docker
def test_doctor_real_engine_is_usable(project: Path):
    require_engine()
    result = gossamer("doctor", cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "usable: the Docker here can run the files gossamer inject writes" in result.stdout
    assert "error" not in result.stdout and "Traceback" not in result.stderr
    as_json = gossamer("doctor", "-o", "json", cwd=project)
    report = json.loads(as_json.stdout)
    assert as_json.returncode == 0 and report["usable"] is True
    assert int(report["engine"].split(".")[0]) >= 25
    assert {f["feature"] for f in report["findings"]} >= {"healthcheck.start_interval"}
    assert {f["severity"] for f in report["findings"]} == {"ok"}


@pytest.mark.docker
def test_inject_check_real_engine_passes_and_writes(project: Path):
    require_engine()
    result = gossamer("inject", "compose.yaml", "--check", cwd=project)
    assert result.returncode == 0, result.stderr
    assert "engine check passed: Docker Engine " in result.stderr
    assert "checks passed: Compose schema" in result.stderr
    assert (project / "compose.meshed.yaml").is_file()
    # an injected file, checked as it is
    again = gossamer("doctor", "compose.meshed.yaml", cwd=project)
    assert again.returncode == 0, again.stdout
    assert "healthcheck.start_interval" in again.stdout


def test_doctor_old_engine_names_start_interval_and_the_fix(project: Path, tmp_path: Path):
    env = fake_docker(tmp_path / "bin", stdout=json.dumps(ENGINE_20_10) + "\n")
    result = gossamer("doctor", cwd=project, env=env)
    assert result.returncode == 1, result.stdout
    assert "Traceback" not in result.stderr
    out = result.stdout
    assert "error    healthcheck.start_interval: `docker compose up` stops" in out
    assert "require Docker Engine v25 or later" in out
    assert "why: the engine speaks API 1.41 (Docker Engine 20.10.24+dfsg1)" in out
    assert "fix: install Docker Engine 25 or later: on Debian 12" in out
    assert "ok       configs.*.content: Compose >= 2.23.1" in out
    assert "warning  Docker Engine: 20.10.24+dfsg1 (API 1.41): older than" in out
    assert "not usable" in out
    report = json.loads(gossamer("doctor", "-o", "json", cwd=project, env=env).stdout)
    assert report["usable"] is False and report["api"] == "1.41"


def test_inject_check_old_engine_fails_and_writes_nothing(project: Path, tmp_path: Path):
    env = fake_docker(tmp_path / "bin", stdout=json.dumps(ENGINE_20_10) + "\n")
    result = gossamer("inject", "compose.yaml", "--check", cwd=project, env=env)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "error    healthcheck.start_interval" in result.stderr
    assert "error: the Docker here cannot run the injected compose.yaml: 1 problem(s)" in (
        result.stderr
    )
    assert "hint: nothing was written" in result.stderr
    assert sorted(p.name for p in project.iterdir()) == ["compose.yaml"]
    # without --check the file is written, for a newer machine
    plain = gossamer("inject", "compose.yaml", cwd=project, env=env)
    assert plain.returncode == 0 and (project / "compose.meshed.yaml").is_file()
    # the plain input needs no new engine; its injection does
    assert gossamer("doctor", "compose.yaml", cwd=project, env=env).returncode == 0
    assert gossamer("doctor", "compose.meshed.yaml", cwd=project, env=env).returncode == 1


def test_daemon_not_running_is_one_clear_finding(project: Path, tmp_path: Path):
    client_only = json.dumps({"Client": ENGINE_20_10["Client"], "Server": None}) + "\n"
    env = fake_docker(tmp_path / "bin", stdout=client_only, stderr=DAEMON_DOWN + "\n", code=1)
    result = gossamer("doctor", cwd=project, env=env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "error    Docker Engine: cannot be used" in result.stdout
    assert "why: the Docker daemon is not running or not reachable: Cannot connect" in (
        result.stdout
    )
    assert "fix: start it" in result.stdout
    # inject --check cannot ask the engine: it says so and goes on
    check = gossamer("inject", "compose.yaml", "--check", cwd=project, env=env)
    assert "engine check skipped: the Docker daemon is not running" in check.stderr
    assert "Traceback" not in check.stderr


def test_no_docker_at_all(project: Path, tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = gossamer("doctor", cwd=project, env={**os.environ, "PATH": str(empty)})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "why: no `docker` command on PATH (Docker is not installed)" in result.stdout
    assert "error    Docker Compose: cannot be used" in result.stdout
