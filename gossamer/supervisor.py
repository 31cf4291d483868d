"""Run a set of child processes as one unit: start in order, watch, stop them all.

Used by `gossamer up`. Each child gets its own process group and, on Linux, a parent-
death signal, so nothing outlives the supervisor even if it is killed with SIGKILL.
Stopping sends SIGTERM to every group in reverse start order, waits, then SIGKILLs
whatever is left. Output goes to one log file per child.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gossamer.errors import GossamerError

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    os.setsid()
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    name: str
    args: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Supervisor:
    def __init__(self, log_dir: Path, base_env: dict[str, str] | None = None) -> None:
        self.log_dir = log_dir
        self.base_env = {**os.environ, **(base_env or {})}
        self.children: list[Child] = []
        log_dir.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, args: Sequence[str], env: dict[str, str] | None = None) -> Child:
        child = Child(name, list(args), self.log_dir / f"{name}.log", dict(env or {}))
        log = open(child.log_path, "ab")  # noqa: SIM115 - the child owns it after fork
        try:
            child.proc = subprocess.Popen(
                child.args,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**self.base_env, **child.env},
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - setsid + prctl only
            )
        except OSError as exc:
            raise GossamerError(f"cannot start {name}: {exc}") from None
        finally:
            log.close()
        child.started_at = time.monotonic()
        self.children.append(child)
        return child

    def wait_until(
        self, child: Child, ready: Callable[[], bool], timeout: float, what: str
    ) -> None:
        """Poll `ready` until true; fail fast if the child exits meanwhile."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not child.running:
                raise GossamerError(
                    f"{child.name} exited during start-up (code {child.proc and child.proc.returncode})",
                    hint=f"its log ({child.log_path}) ends with:\n{child.tail(8)}",
                )
            with contextlib.suppress(Exception):  # not ready yet, whatever the probe raised
                if ready():
                    return
            time.sleep(0.05)
        raise GossamerError(
            f"{child.name} was not {what} within {timeout:.0f}s",
            hint=f"see its log: {child.log_path}",
        )

    def exited(self) -> list[Child]:
        return [c for c in self.children if c.proc is not None and c.proc.poll() is not None]

    def stop(self, grace: float = 8.0, children: Sequence[Child] | None = None) -> None:
        """SIGTERM every child group (reverse order), then SIGKILL what remains;
        `children`: only those (the rest keep running)."""
        chosen = list(self.children if children is None else children)
        for child in reversed(chosen):
            if child.proc is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in reversed(chosen):
            if child.proc is None:
                continue
            try:
                child.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for child in chosen:
            if child.proc is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.proc.wait(2)
