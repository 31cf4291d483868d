"""Loopback networking helpers for tests: free ports, waiting for a port to accept, and
counting the TCP connections made to a port."""

from __future__ import annotations

import contextlib
import errno
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

from tests.helpers.procs import free_port

__all__ = [
    "established_to",
    "free_port",
    "idle_connections",
    "seconds_until_cut_off",
    "wait_for_port",
]


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


@contextlib.contextmanager
def idle_connections(port: int, count: int) -> Iterator[list[socket.socket]]:
    """`count` TCP connections to `port` that never send a byte (non-blocking connects).

    They close with a reset (SO_LINGER 0): a connection the server has not accepted yet
    (its handshake still waiting for room in the accept queue) then goes away at once,
    instead of completing later and reaching the server during the next test."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.setblocking(False)
            code = s.connect_ex(("127.0.0.1", port))
            assert code in (0, errno.EINPROGRESS), errno.errorcode.get(code, code)
            socks.append(s)
        yield socks
    finally:
        for s in socks:
            s.close()


def seconds_until_cut_off(port: int, first: bytes, trickle: bytes) -> float | None:
    """Connect to `port`, send `first`, then `trickle` every 0.2 s (40 times at most):
    the seconds from connecting until the server closed the connection, or None if it
    never did."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(first)
        for _ in range(40):
            time.sleep(0.2)
            try:
                s.sendall(trickle)
                s.settimeout(0.01)
                if s.recv(1) == b"":
                    return time.monotonic() - start
            except TimeoutError:
                continue
            except OSError:
                return time.monotonic() - start
    return None
