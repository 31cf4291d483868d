"""An HTTP/1.1 pipelining client for attack tests: it writes many requests at once without
reading, waits until told to, then reads every response in order.

It runs its own asyncio loop in a thread (a TLS socket cannot be written by one thread
and read by another), so the test's thread stays free to measure the target meanwhile.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path


class Pipeliner:
    def __init__(
        self,
        port: int,
        payload: bytes,
        count: int,
        *,
        tls: ssl.SSLContext | None = None,
        sni: str | None = None,
        rcvbuf: int = 16384,
    ) -> None:
        self.port = port
        self.payload = payload
        self.count = count  # responses to read
        self.tls = tls
        self.sni = sni
        self.rcvbuf = rcvbuf  # small, as an attacker sets it: the kernel holds few replies
        self.written = threading.Event()  # the payload was handed to the socket
        self.read_now = threading.Event()  # set by the test: start reading
        self.statuses: list[int] = []
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    def start(self) -> None:
        self._thread.start()
        assert self.written.wait(10), self.error

    def read_all(self, timeout: float) -> list[int]:
        """Start reading; the statuses of the `count` responses, in order."""
        self.read_now.set()
        self._thread.join(timeout)
        if self.error is not None:
            raise self.error
        assert not self._thread.is_alive(), f"only {len(self.statuses)} responses read"
        return self.statuses

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # reported by read_all
            self.error = exc
            self.written.set()

    async def _run(self) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        sock.connect(("127.0.0.1", self.port))
        reader, writer = await asyncio.open_connection(
            sock=sock, ssl=self.tls, server_hostname=self.sni if self.tls else None
        )
        writer.write(self.payload)  # buffered by asyncio: sent as the peer reads
        self.written.set()
        while not self.read_now.is_set():
            await asyncio.sleep(0.02)
        for _ in range(self.count):
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            self.statuses.append(status)
        writer.close()


def rss_kib(pid: int) -> int:
    """The process's resident set size (VmRSS), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def timed(call: Callable[[], object]) -> float:
    """Seconds `call()` took."""
    start = time.monotonic()
    call()
    return time.monotonic() - start
