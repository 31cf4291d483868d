"""Starting and stopping real processes in tests: free ports, readiness polling, cleanup."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from gossamer.up.layout import port_free as bindable

# Ports handed out by free_port come from below the kernel's ephemeral range
# (net.ipv4.ip_local_port_range, 32768-60999 by default), so the local port of some
# outgoing connection can never take one between free_port() and the server's bind,
# and each is handed out once per test session.
_PORT_LOW, _PORT_HIGH = 20000, 32000
_next_port = _PORT_LOW + (os.getpid() * 7919) % (_PORT_HIGH - _PORT_LOW)


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Nothing is bound to `port` on `host` or on the wildcard address."""
    return all(bindable(addr, port) for addr in {host, "0.0.0.0"})


def free_port(host: str = "127.0.0.1") -> int:
    """A port free right now, outside the ephemeral range, never handed out twice."""
    global _next_port
    for _ in range(_PORT_HIGH - _PORT_LOW):
        port = _next_port
        _next_port = _PORT_LOW + (_next_port + 1 - _PORT_LOW) % (_PORT_HIGH - _PORT_LOW)
        if port_free(port, host):
            return port
    raise RuntimeError(f"no free port in {_PORT_LOW}-{_PORT_HIGH}")


def wait_for(
    condition: Callable[[], bool],
    timeout: float = 20.0,
    interval: float = 0.05,
    what: str = "condition",
) -> None:
    """Poll `condition` until it is true or raise TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except Exception:
            pass
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def http_get(
    url: str, timeout: float = 5.0, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Process:
    """A child process with its output in a log file; killed with its group on stop."""

    def __init__(
        self,
        args: Sequence[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ):
        self.args = list(args)
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.args,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.proc.wait(5)
        else:
            self.signal(signal.SIGKILL)  # stray children of a dead leader
        self._log.close()
        return self.proc.returncode


@contextlib.contextmanager
def processes() -> Iterator[list[Process]]:
    """Collect processes started in a block; stop them all at the end, whatever happens."""
    started: list[Process] = []
    try:
        yield started
    finally:
        for proc in reversed(started):
            proc.stop()


def gossamer_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "gossamer.cli.main", *args]


def run_gossamer(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`gossamer ARGS` to its end in a separate process (with `env` if given), its output
    captured as text."""
    return subprocess.run(gossamer_cmd(*args), capture_output=True, text=True, timeout=60, env=env)
