"""Upstream connections: connecting (plain or mTLS with identity check) and pooling.

`EndpointPool` keeps idle HTTP/1.1 connections to one endpoint of one cluster, newest
first (LIFO keeps a few connections warm instead of many lukewarm). A connection
returns to the pool when its exchange ends with keep-alive on both sides; idle ones
older than `idle_timeout` are closed by `expire`. Connections are per cluster because
the SNI (the target port) is part of the connection.

`connect_mtls` opens TCP, runs the TLS 1.3 handshake through `TlsLayer` with the
current client context (so rotated certificates apply to new connections only), and
checks that the peer's SPIFFE ID is the one the cluster expects; a wrong identity is
`IdentityMismatch`, any other failure `UpstreamConnectError`.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from gossamer.errors import UpstreamConnectError
from gossamer.proxy.service import IdentityMismatch
from gossamer.proxy.transport.http1.client import Http1Client
from gossamer.proxy.transport.pool_base import PoolBase
from gossamer.proxy.transport.tls_contexts import spiffe_id_from_peercert
from gossamer.proxy.transport.tls_transport import TlsLayer
from gossamer.proxy.upstream.breaker import CircuitBreaker

ProtocolFactory = Callable[[], asyncio.BaseProtocol]


async def open_plain(
    host: str, port: int, protocol: asyncio.BaseProtocol, connect_timeout: float
) -> Any:
    """A TCP connection with `protocol`; returns the transport."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(connect_timeout):
            transport, _ = await loop.create_connection(lambda: protocol, host, port)
    except (OSError, TimeoutError) as exc:
        raise UpstreamConnectError(f"cannot connect to {host}:{port}: {_why(exc)}") from None
    return transport


async def open_mtls(
    host: str,
    port: int,
    protocol: asyncio.BaseProtocol,
    *,
    context: ssl.SSLContext,
    sni: str,
    identity: str | None,
    connect_timeout: float,
) -> TlsLayer:
    """An mTLS connection whose peer presents `identity`; returns the TLS transport."""
    loop = asyncio.get_running_loop()
    layer: TlsLayer | None = None

    def factory() -> TlsLayer:
        nonlocal layer
        layer = TlsLayer(
            context,
            server_side=False,
            server_hostname=sni,
            app_protocol=protocol,
            handshake_timeout=connect_timeout,
        )
        return layer

    try:
        async with asyncio.timeout(connect_timeout):
            await loop.create_connection(factory, host, port)
            assert layer is not None
            await layer.handshake
    except (OSError, TimeoutError, ssl.SSLError, ssl.CertificateError) as exc:
        if layer is not None:
            layer.abort()
        raise UpstreamConnectError(f"cannot connect to {host}:{port}: {_why(exc)}") from None
    peer = spiffe_id_from_peercert(layer.get_extra_info("peercert"))
    if identity is not None and peer != identity:
        layer.abort()
        raise IdentityMismatch(
            f"{host}:{port} presented {peer or 'no SPIFFE ID'}, expected {identity}"
        )
    return layer


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"TLS: {exc.reason or exc} ({exc.verify_message})"  # e.g. certificate revoked
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    return exc.strerror or str(exc) if isinstance(exc, OSError) else str(exc)


Connector = Callable[[Http1Client, float], Awaitable[Any]]  # (protocol, seconds allowed)


class EndpointPool(PoolBase[Http1Client]):
    """Idle HTTP/1.1 connections to one (cluster, endpoint)."""

    __slots__ = ("_idle", "max_idle")

    def __init__(
        self,
        connect: Connector,
        *,
        max_idle: int = 64,
        idle_timeout: float = 60.0,
        clock: Callable[[], float],
        breaker: CircuitBreaker | None = None,
    ) -> None:
        super().__init__(connect, idle_timeout=idle_timeout, clock=clock, breaker=breaker)
        self._idle: list[Http1Client] = []
        self.max_idle = max_idle

    async def acquire(self, deadline: float = float("inf")) -> tuple[Http1Client, bool]:
        """A connection and whether it was reused; raises UpstreamConnectError (or
        UpstreamTimeout when `deadline`, a loop time, passes while connecting).
        Over the breaker's max_connections the request waits as a pending request for a
        connection of the cluster to close or go idle (an idle one of this pool is then
        reused)."""
        conn = self._reuse()
        if conn is not None:
            return conn, True
        conn = await self._reserve(deadline)
        if conn is not None:
            return conn, True
        return await self._open(deadline), False

    def _reuse(self) -> Http1Client | None:
        idle = self._idle
        while idle:
            conn = idle.pop()
            if conn.usable:
                conn.busy = True
                return conn
        return None

    def _new_conn(self) -> Http1Client:
        return Http1Client(self)

    def _opened(self, conn: Http1Client) -> None:
        conn.busy = True

    def release(self, conn: Http1Client) -> None:
        if self.closed or len(self._idle) >= self.max_idle:
            conn.close()
            return
        conn.idle_since = self.clock()
        self._idle.append(conn)
        if self.breaker is not None and self.breaker.has_waiters:
            self.breaker.notify()

    def lost(self, conn: Http1Client) -> None:
        self._lost()
        if conn in self._idle:
            self._idle.remove(conn)

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    def close_idle(self) -> bool:
        """Close the longest-idle connection, if any (its close frees a breaker unit)."""
        if not self._idle:
            return False
        self._idle.pop(0).close()
        return True

    def expire(self) -> None:
        """Close connections idle for longer than `idle_timeout`."""
        limit = self.clock() - self.idle_timeout
        keep = []
        for conn in self._idle:
            if conn.idle_since < limit or not conn.usable:
                conn.close()
            else:
                keep.append(conn)
        self._idle[:] = keep

    def close(self) -> None:
        """Stop pooling: close idle connections; busy ones close when they finish."""
        self.closed = True
        for conn in self._idle:
            conn.close()
        self._idle.clear()
