"""Downstream connections: what is known about each, and the set of live ones.

`ConnectionTracker` sweeps the live HTTP connections twice a second to enforce header
and idle deadlines (one timer for all, instead of a timer per request), counts
connections, and drains them on shutdown: idle ones close at once, busy ones after their
current response, and whatever is left at the deadline is aborted.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Protocol


class ConnectionInfo:
    """Facts about one downstream connection, shared by its requests."""

    __slots__ = (
        "app_port",
        "client",
        "listener",
        "original_dst",
        "peer_identity",
        "request_series",
        "security",
        "xfcc",
    )

    def __init__(
        self,
        listener: str,
        client: str = "",
        *,
        peer_identity: str | None = None,
        security: str = "none",
        app_port: Any = None,
        original_dst: tuple[str, int] | None = None,
    ) -> None:
        self.listener = listener  # "outbound", "inbound", "admin"
        self.client = client  # the peer's IP address
        self.peer_identity = peer_identity  # verified SPIFFE ID (inbound)
        self.security = security  # "mutual_tls" or "none"
        self.app_port = app_port  # inbound: the AppPort this connection targets
        self.original_dst = original_dst  # transparent mode
        self.xfcc = b""  # inbound: the x-forwarded-client-cert value for this peer
        # inbound telemetry: this connection's request series by method (their labels
        # are the same for every request on it but the method)
        self.request_series: dict[str, Any] = {}


class Tracked(Protocol):
    deadline: float

    def check_deadline(self, now: float) -> None: ...

    def shutdown(self) -> None: ...

    def close(self) -> None: ...


class ConnectionTracker:
    def __init__(self, interval: float = 0.5) -> None:
        self.live: set[Tracked] = set()
        self.opened_total = 0
        self.draining = False
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self._empty: asyncio.Event | None = None

    def add(self, conn: Tracked) -> None:
        self.live.add(conn)
        self.opened_total += 1
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._sweep())

    def discard(self, conn: Tracked) -> None:
        self.live.discard(conn)
        if not self.live and self._empty is not None:
            self._empty.set()

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._interval)
            now = loop.time()
            for conn in list(self.live):
                if conn.deadline <= now:
                    conn.check_deadline(now)

    async def drain(self, grace: float) -> int:
        """Close connections gracefully; abort what remains after `grace` seconds. Returns
        the number of connections that had to be aborted."""
        self.draining = True
        self._empty = asyncio.Event()
        for conn in list(self.live):
            conn.shutdown()
        if self.live:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await self._empty.wait()
        left = list(self.live)
        for conn in left:
            transport = getattr(conn, "transport", None)
            if transport is not None:
                transport.abort()
            self.live.discard(conn)
        return len(left)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
