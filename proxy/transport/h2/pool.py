"""Pooled, multiplexed HTTP/2 connections to one endpoint of one cluster.

One connection carries every exchange while the upstream allows more concurrent
streams (its MAX_CONCURRENT_STREAMS); another opens only when all are full. Exchanges
waiting for the first connection share its handshake instead of each opening one.
A connection that got GOAWAY leaves the pool (its open streams finish on it);
connections without streams for longer than `idle_timeout` are closed by `expire`;
`close` sends GOAWAY to every connection, which closes when its streams end.

Circuit breaking (pool_base.py): each connection holds a unit of the cluster's
`max_connections` from its start until it has closed (a connection draining after
GOAWAY still holds it). When every connection is full and no unit is left, an
exchange waits as a pending request (at most `max_pending_requests`, then 503
`overflow`) until a stream ends or a connection of the cluster closes.

Same interface as the HTTP/1.1 `EndpointPool` (acquire, fresh, close_idle, expire,
close, open, idle_count), so the endpoint service and the cluster manager treat both
alike.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from gossamer.errors import UpstreamConnectError, UpstreamTimeout
from gossamer.proxy.transport.h2.client import H2Client
from gossamer.proxy.transport.pool_base import INF, PoolBase
from gossamer.proxy.upstream.breaker import CircuitBreaker

H2Connector = Callable[[H2Client, float], Awaitable[Any]]  # (protocol, seconds allowed)


class H2Pool(PoolBase[H2Client]):
    __slots__ = ("_connecting", "conns", "scheme")

    def __init__(
        self,
        connect: H2Connector,
        *,
        idle_timeout: float = 60.0,
        clock: Callable[[], float],
        scheme: bytes = b"http",
        breaker: CircuitBreaker | None = None,
    ) -> None:
        super().__init__(connect, idle_timeout=idle_timeout, clock=clock, breaker=breaker)
        self._connecting: asyncio.Future[H2Client] | None = None
        self.conns: list[H2Client] = []
        self.scheme = scheme

    async def acquire(self, deadline: float = INF) -> tuple[H2Client, bool]:
        """A connection with room for one more stream, and whether it was already open."""
        while True:
            conn = self._reuse()
            if conn is not None:
                return conn, True
            connecting = self._connecting
            if connecting is None:
                break
            try:
                async with asyncio.timeout_at(None if deadline == INF else deadline):
                    conn = await asyncio.shield(connecting)
            except TimeoutError:
                raise UpstreamTimeout("the request's timeout passed while connecting") from None
            if conn.usable:
                return conn, False
        # every connection is full (or there is none, and none on the way)
        conn = await self._reserve(deadline)
        if conn is not None:
            return conn, True
        fut: asyncio.Future[H2Client] = asyncio.get_running_loop().create_future()
        self._connecting = fut
        try:
            conn = await self._open(deadline)
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

    # -- PoolBase ----------------------------------------------------------------------
    def _reuse(self) -> H2Client | None:
        for conn in self.conns:
            if conn.usable:
                return conn
        return None

    def _new_conn(self) -> H2Client:
        return H2Client(self, scheme=self.scheme)

    def _opened(self, conn: H2Client) -> None:
        if self.closed:
            conn.shutdown()
        else:
            self.conns.append(conn)
            self._pass_on(conn)  # room for pending requests beside the one that opened it

    # -- H2Client's owner --------------------------------------------------------------
    def lost(self, conn: H2Client) -> None:
        """The connection has closed."""
        self._lost()
        if conn in self.conns:
            self.conns.remove(conn)

    def going_away(self, conn: H2Client) -> None:
        """The upstream sent GOAWAY: no new streams on `conn` (it keeps its unit of
        max_connections until it has closed)."""
        if conn in self.conns:
            self.conns.remove(conn)

    def stream_ended(self, conn: H2Client) -> None:
        """A stream of `conn` ended: it has room for another."""
        if not conn.streams:
            conn.idle_since = self.clock()
            if self.closed:
                conn.shutdown()
                return
        self._pass_on(conn)

    # -- housekeeping ------------------------------------------------------------------
    @property
    def idle_count(self) -> int:
        return sum(1 for c in self.conns if not c.streams)

    def close_idle(self) -> bool:
        """Close a connection without streams, if any (its close frees a breaker unit
        for a request of another endpoint of the cluster)."""
        for conn in self.conns:
            if not conn.streams and not conn.goaway and not conn.closed:
                conn.shutdown()
                return True
        return False

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
