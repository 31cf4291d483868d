"""Loopback networking helpers for tests: free ports and waiting for a port to accept."""

from __future__ import annotations

import socket
import time

from tests.helpers.procs import free_port

__all__ = ["free_port", "wait_for_port"]


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
