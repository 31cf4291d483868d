"""Pooled, multiplexed HTTP/2 connections to one endpoint of one cluster.

One connection carries every exchange while the upstream allows more concurrent
streams (its MAX_CONCURRENT_STREAMS); another opens only when all are full. Exchanges
waiting for the first connection share its handshake instead of each opening one.
A connection that got GOAWAY leaves the pool (its open streams finish on it);
connections without streams for longer than `idle_timeout` are closed by `expire`;
`close` sends GOAWAY to every connection, which closes when its streams end.

Same interface as the HTTP/1.1 `EndpointPool` (acquire, fresh, expire, close, open,
idle_count), so the endpoint service and the cluster manager treat both alike.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from gossamer.errors import UpstreamConnectError, UpstreamTimeout
from gossamer.proxy.h2.client import H2Client
from gossamer.proxy.pool_base import PoolBase

H2Connector = Callable[[H2Client, float], Awaitable[Any]]  # (protocol, seconds allowed)


class H2Pool(PoolBase[H2Client]):
    __slots__ = ("_connecting", "clock", "closed", "conns", "idle_timeout", "scheme")

    def __init__(
        self,
        connect: H2Connector,
        *,
        idle_timeout: float = 60.0,
        clock: Callable[[], float],
        scheme: bytes = b"http",
    ) -> None:
        super().__init__(connect)
        self._connecting: asyncio.Future[H2Client] | None = None
        self.conns: list[H2Client] = []
        self.idle_timeout = idle_timeout
        self.clock = clock
        self.scheme = scheme
        self.closed = False

    async def acquire(self, deadline: float = float("inf")) -> tuple[H2Client, bool]:
        """A connection with room for one more stream, and whether it was already open."""
        for conn in self.conns:
            if conn.usable:
                return conn, True
        connecting = self._connecting
        if connecting is not None:
            try:
                async with asyncio.timeout_at(None if deadline == float("inf") else deadline):
                    conn = await asyncio.shield(connecting)
            except TimeoutError:
                raise UpstreamTimeout("the request's timeout passed while connecting") from None
            if conn.usable:
                return conn, False
        fut: asyncio.Future[H2Client] = asyncio.get_running_loop().create_future()
        self._connecting = fut
        try:
            conn = await self.fresh(deadline)
        except BaseException as exc:
            if not fut.done():
                fut.set_exception(
                    exc if isinstance(exc, Exception) else UpstreamConnectError("cancelled")
                )
                fut.exception()
            raise
        finally:
            if self._connecting is fut:
                self._connecting = None
        fut.set_result(conn)
        return conn, False

    async def fresh(self, deadline: float = float("inf")) -> H2Client:
        conn = H2Client(self, scheme=self.scheme)
        await self._connect_new(conn, deadline)
        if self.closed:
            conn.shutdown()
        else:
            self.conns.append(conn)
        return conn

    # -- H2Client's owner --------------------------------------------------------------
    def lost(self, conn: H2Client) -> None:
        self.open -= 1
        if conn in self.conns:
            self.conns.remove(conn)

    def idle(self, conn: H2Client) -> None:
        """The connection has no stream left."""
        conn.idle_since = self.clock()
        if self.closed:
            conn.shutdown()

    # -- housekeeping ------------------------------------------------------------------
    @property
    def idle_count(self) -> int:
        return sum(1 for c in self.conns if not c.streams)

    def expire(self) -> None:
        limit = self.clock() - self.idle_timeout
        for conn in list(self.conns):
            if not conn.streams and conn.idle_since and conn.idle_since < limit:
                conn.shutdown()

    def close(self) -> None:
        """GOAWAY on every connection; each closes when its open streams end."""
        self.closed = True
        for conn in list(self.conns):
            conn.shutdown()
