"""Ask the local `docker` CLI which Engine and Compose versions it has.

The I/O half of `engine_check`: `docker version --format '{{json .}}'` and
`docker compose version --short`, each with a timeout. Whatever goes wrong (no `docker`
command, a daemon that is not running or not reachable, a missing Compose plugin) comes
back as a one-line problem in `Versions`, never as an exception.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import replace
from typing import Any

from gossamer.compose.engine_check import Version, Versions, parse_version

TIMEOUT = 15.0


def _run(argv: list[str], timeout: float) -> tuple[int, str, str] | str:
    """(exit code, stdout, stderr), or a problem when the command could not run."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"`{' '.join(argv[1:3])}` did not answer within {timeout:g}s"
    except OSError as exc:
        return f"cannot run {argv[0]}: {exc.strerror or exc}"
    return done.returncode, done.stdout, done.stderr


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else ""


def _daemon_problem(stderr: str) -> tuple[str, str]:
    """Why the daemon did not answer, and what to do, for a person."""
    message = _first_line(stderr) or "no message"
    lowered = message.lower()
    if "permission denied" in lowered:
        fix = "add yourself to the docker group (then log in again), or run as root"
        return f"no permission to use the Docker socket: {message}", fix
    if "cannot connect" in lowered or "is the docker daemon running" in lowered:
        fix = "start it (`sudo systemctl start docker`), or point DOCKER_HOST at a running one"
        return f"the Docker daemon is not running or not reachable: {message}", fix
    return f"`docker version` failed: {message}", "run `docker version` to see why"


def _parse_version(text: Any) -> Version | None:
    if not isinstance(text, str):
        return None
    try:
        return parse_version(text)
    except ValueError:
        return None


def _engine(docker: str, timeout: float) -> Versions:
    """The engine's half of Versions: its version, API version, or the problem."""
    ran = _run([docker, "version", "--format", "{{json .}}"], timeout)
    if isinstance(ran, str):
        return Versions(engine_problem=ran, engine_fix="run `docker version` to see why")
    code, stdout, stderr = ran
    try:
        report = json.loads(stdout) if stdout.strip() else {}
    except json.JSONDecodeError:
        report = {}
    server = report.get("Server") if isinstance(report, dict) else None
    if not isinstance(server, dict):
        problem, fix = _daemon_problem(stderr)
        return Versions(engine_problem=problem, engine_fix=fix)
    text = server.get("Version")
    engine, api = _parse_version(text), _parse_version(server.get("ApiVersion"))
    if engine is None and api is None:
        return Versions(engine_problem=f"unreadable engine version {text!r} (exit {code})")
    return Versions(engine=engine, api=api, engine_text=text if isinstance(text, str) else "")


def _compose(docker: str, timeout: float) -> tuple[Version | None, str, str | None]:
    """(Compose version, its text, problem)."""
    ran = _run([docker, "compose", "version", "--short"], timeout)
    if isinstance(ran, str):
        return None, "", ran
    code, stdout, stderr = ran
    text = _first_line(stdout)
    if code != 0 or not text:
        message = _first_line(stderr) or f"exit {code}"
        if "not a docker command" in message or "unknown command" in message:
            return None, "", f"the Compose v2 plugin is not installed ({message})"
        return None, "", f"`docker compose version` failed: {message}"
    version = _parse_version(text)
    if version is None:
        return None, text, f"unreadable Compose version {text!r}"
    return version, text, None


def probe(docker: str = "docker", timeout: float = TIMEOUT) -> Versions:
    """The versions of the Engine and Compose behind the `docker` command on PATH."""
    path = shutil.which(docker)
    if path is None:
        missing = f"no `{docker}` command on PATH (Docker is not installed)"
        return Versions(engine_problem=missing, compose_problem=missing)
    compose, compose_text, compose_problem = _compose(path, timeout)
    return replace(
        _engine(path, timeout),
        compose=compose,
        compose_text=compose_text,
        compose_problem=compose_problem,
    )
