"""Driving a real `docker compose` project from a test (marker `docker`).

`ComposeProject` names one Compose project (its files, working directory and extra
environment) and runs the Docker CLI on it with bounded timeouts: `up` (waiting for
health checks), `exec`, `logs`, `ps`, `port`, `health`, and `down_clean`, which removes
everything the project made and asserts that no container, network or volume with its
label is left. `require_engine()` fails (never skips) when no engine answers.

Typical use, with the teardown in a finalizer so a failed test cleans up too:

    project = ComposeProject(unique_project_name("demo"), [meshed, override], cwd=tmp_path)
    try:
        project.up(timeout=150)
        ...
    finally:
        project.down_clean()
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"


def docker_cli() -> str:
    """The `docker` client: $DOCKER, else the one on PATH, else /usr/local/bin/docker."""
    return os.environ.get("DOCKER") or shutil.which("docker") or "/usr/local/bin/docker"


def docker(*args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`docker ARGS`, output captured as text; raises AssertionError with stderr on failure
    when `check`."""
    proc = subprocess.run(
        [docker_cli(), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"docker {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-4000:]}"
        )
    return proc


def require_engine() -> None:
    """Fail the calling test unless a Docker Engine with the Compose plugin answers."""
    try:
        info = docker("info", "--format", "{{.ServerVersion}}", timeout=20, check=False)
        compose = docker("compose", "version", "--short", timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AssertionError(f"no usable Docker client ({exc}); run ./dev docker") from exc
    if info.returncode != 0 or compose.returncode != 0:
        raise AssertionError(
            "the Docker Engine or its Compose plugin does not answer; run ./dev docker\n"
            + info.stderr
            + compose.stderr
        )


def unique_project_name(prefix: str) -> str:
    """A Compose project name nobody else uses: `prefix-<8 hex digits>` (lower case)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}".lower()


def _json_lines(text: str) -> list[dict[str, Any]]:
    """`--format json` output: one JSON array (older Compose) or one object per line."""
    text = text.strip()
    if not text:
        return []
    if text.startswith("["):
        data = json.loads(text)
        return list(data)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@dataclass
class ComposeProject:
    """One Compose project: `docker compose -p NAME -f FILE... ` run in `cwd` with `env`
    added to this process's environment."""

    name: str
    files: Sequence[Path]
    cwd: Path
    env: Mapping[str, str] = field(default_factory=dict)

    def compose(
        self, *args: str, timeout: float = 60, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """`docker compose -p NAME -f ... ARGS`; AssertionError with stderr on failure
        when `check`."""
        argv = [docker_cli(), "compose", "-p", self.name]
        for path in self.files:
            argv += ["-f", str(path)]
        proc = subprocess.run(
            [*argv, *args],
            cwd=self.cwd,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"docker compose {' '.join(args)} (project {self.name}) exited "
                f"{proc.returncode}:\n{proc.stderr[-4000:]}"
            )
        return proc

    def up(self, *services: str, timeout: float = 150) -> None:
        """`up -d --wait`: every container running, and healthy where it has a health
        check (one-shot containers completed), within `timeout` seconds. On failure the
        AssertionError carries `ps` and the last log lines of every service."""
        proc = self.compose(
            "up", "-d", "--wait", "--wait-timeout", str(int(timeout)), *services,
            timeout=timeout + 60, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            raise AssertionError(
                f"docker compose up (project {self.name}) exited {proc.returncode}:\n"
                f"{proc.stderr[-3000:]}\n{self.describe()}"
            )

    def describe(self) -> str:
        """The project's state for a failure message: `ps -a` and each service's last
        log lines."""
        ps = self.compose("ps", "-a", timeout=30, check=False).stdout
        logs = self.compose("logs", "--no-color", "--tail", "30", timeout=30, check=False)
        return f"--- ps ---\n{ps}\n--- logs (last 30 lines each) ---\n{logs.stdout[-8000:]}"

    def ps(self) -> list[dict[str, Any]]:
        """Every container of the project, stopped ones too (`ps -a --format json`)."""
        return _json_lines(self.compose("ps", "-a", "--format", "json", timeout=30).stdout)

    def exec(
        self,
        service: str,
        argv: Sequence[str],
        timeout: float = 30,
        check: bool = True,
        user: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """`exec -T SERVICE ARGV` (no TTY), as `user` if given."""
        opts = ["-T"] + (["--user", user] if user else [])
        return self.compose("exec", *opts, service, *argv, timeout=timeout, check=check)

    def logs(self, *services: str, timeout: float = 30) -> str:
        """The services' logs (all of them when none is named), without colours."""
        return self.compose("logs", "--no-color", *services, timeout=timeout).stdout

    def port(self, service: str, private_port: int) -> tuple[str, int]:
        """The host address and port that SERVICE's `private_port` is published on."""
        out = self.compose("port", service, str(private_port), timeout=30).stdout.strip()
        host, _, port = out.rpartition(":")
        return (host.strip("[]") or "127.0.0.1", int(port))

    def container_id(self, service: str) -> str:
        """The id of SERVICE's (first) container."""
        out = self.compose("ps", "-a", "-q", service, timeout=30).stdout.split()
        assert out, f"service {service} of project {self.name} has no container"
        return out[0]

    def health(self, service: str) -> str | None:
        """SERVICE's health as Docker reports it (`healthy`, `unhealthy`, `starting`),
        or None when it has no health check."""
        fmt = "{{if .State.Health}}{{.State.Health.Status}}{{end}}"
        out = docker("inspect", "-f", fmt, self.container_id(service), timeout=30).stdout
        return out.strip() or None

    def leftovers(self) -> dict[str, list[str]]:
        """Containers, networks and volumes that still carry this project's label."""
        label = f"label={PROJECT_LABEL}={self.name}"
        return {
            kind: docker(*cmd, "--filter", label, "--format", fmt, timeout=30).stdout.split()
            for kind, cmd, fmt in (
                ("containers", ("ps", "-a"), "{{.Names}}"),
                ("networks", ("network", "ls"), "{{.Name}}"),
                ("volumes", ("volume", "ls"), "{{.Name}}"),
            )
        }

    def down_clean(self, timeout: float = 120) -> None:
        """`down -v --remove-orphans`, then assert that nothing of the project is left."""
        proc = self.compose(
            "down", "-v", "--remove-orphans", "--timeout", "10", timeout=timeout, check=False
        )
        left = {kind: names for kind, names in self.leftovers().items() if names}
        assert not left, f"project {self.name} left behind: {left}\n{proc.stderr[-2000:]}"
