"""Loopback networking helpers for tests: free ports, waiting for a port to accept, and
counting the TCP connections made to a port."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from tests.helpers.procs import free_port

__all__ = ["established_to", "free_port", "wait_for_port"]


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing accepts connections on {host}:{port}") from None
            time.sleep(0.05)


def established_to(port: int) -> int:
    """TCP connections of this network namespace in state ESTABLISHED whose remote
    port is `port` (the connecting side of each connection to a local server there)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            remote, state = fields[2], fields[3]
            if state == "01" and int(remote.rsplit(":", 1)[1], 16) == port:
                count += 1
    return count
