"""What the HTTP/1.1 and the HTTP/2 endpoint pools share: opening an upstream connection
within a request's deadline and within the cluster's circuit breaker, and counting it.

Theory of operation:
- A new connection takes a unit of the breaker's `max_connections` (`_reserve`) and
  gives it back when it is lost (`_lost`), or at once if connecting fails. With no unit
  left, the request becomes a pending request (`max_pending_requests` of them at most;
  one more is `Overflow`, 503 `overflow`) until a connection of the cluster closes or
  has room again; it then takes a connection of its own pool that has room (`_reuse`:
  an idle HTTP/1.1 connection, an HTTP/2 one below its MAX_CONCURRENT_STREAMS) or the
  freed unit. A connection that still has room after a waiter took it (HTTP/2) wakes
  the next waiter too. This is Envoy's circuit breaking for both protocols: for HTTP/2,
  `max_connections` bounds the connections a cluster multiplexes its streams on, and
  `max_pending_requests` the requests waiting for one to have room.
- `_open(deadline)` runs the pool's connector with the time left before `deadline` (a
  loop time), counts the attempt (`connects_total`) and the connection while it lives
  (`open`), and on failure detaches the protocol from the pool (its late
  `connection_lost` must not count it twice). A connect failure that ends after the
  deadline is reported as the timeout it is (`UpstreamTimeout`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, Protocol, TypeVar

from gossamer.errors import UpstreamConnectError, UpstreamTimeout
from gossamer.proxy.upstream.breaker import CircuitBreaker

INF = float("inf")


class PooledConnection(Protocol):
    """What a pool needs of its connections (`Http1Client`, `H2Client`)."""

    loop: asyncio.AbstractEventLoop
    _owner: Any  # the pool, told when the connection is lost

    @property
    def usable(self) -> bool: ...


C = TypeVar("C", bound=PooledConnection)


class PoolBase(Generic[C]):
    __slots__ = ("_connect", "breaker", "clock", "closed", "connects_total", "idle_timeout", "open")

    def __init__(
        self,
        connect: Callable[[C, float], Awaitable[Any]],
        *,
        idle_timeout: float,
        clock: Callable[[], float],
        breaker: CircuitBreaker | None,
    ) -> None:
        self._connect = connect  # (protocol, seconds allowed) -> transport
        self.breaker = breaker  # the cluster's: max_connections, max_pending_requests
        self.idle_timeout = idle_timeout
        self.clock = clock
        self.closed = False
        self.open = 0  # connections alive
        self.connects_total = 0

    # -- what each pool defines ------------------------------------------------------------
    def _new_conn(self) -> C:
        """A protocol instance owned by this pool, not connected yet."""
        raise NotImplementedError

    def _reuse(self) -> C | None:
        """A connection of this pool that can take one more exchange now, if any."""
        raise NotImplementedError

    def _opened(self, conn: C) -> None:
        """`conn` has just connected (the pool takes it in)."""
        raise NotImplementedError

    # -- shared ----------------------------------------------------------------------------
    async def fresh(self, deadline: float = INF) -> C:
        """A new connection (within the breaker: over max_connections, whatever a
        pending request gets first, which may be a pooled connection)."""
        conn = await self._reserve(deadline)
        return conn if conn is not None else await self._open(deadline)

    async def _reserve(self, deadline: float) -> C | None:
        """Take a unit of max_connections for a new connection (returns None), or wait
        as a pending request; returns a connection of this pool with room if one
        turns up first. Overflow when max_pending_requests are already waiting,
        UpstreamTimeout when `deadline` passes."""
        breaker = self.breaker
        if breaker is None or breaker.try_acquire_connection():
            return None
        loop = asyncio.get_running_loop()
        while True:
            try:
                await breaker.wait_connection(deadline - loop.time())
            except TimeoutError:
                raise UpstreamTimeout(
                    "the request's timeout passed while waiting for a connection"
                ) from None
            conn = self._reuse()
            if conn is not None:
                self._pass_on(conn)
                return conn
            if breaker.try_acquire_connection():
                return None

    def _pass_on(self, conn: C) -> None:
        """`conn` has room for more (a new HTTP/2 connection, or one whose stream ended):
        wake a pending request of the cluster to take it."""
        breaker = self.breaker
        if breaker is not None and breaker.has_waiters and conn.usable:
            breaker.notify()

    async def _open(self, deadline: float = INF) -> C:
        """Connect a new connection before `deadline`; the breaker's unit for it is
        already taken (given back on failure). Raises UpstreamConnectError, or
        UpstreamTimeout when the deadline passes first."""
        conn = self._new_conn()
        self.connects_total += 1
        self.open += 1
        try:
            left = deadline - conn.loop.time()
            if left <= 0:
                raise UpstreamTimeout("no time left to connect")
            await self._connect(conn, left)
        except BaseException as exc:
            self.open -= 1
            conn._owner = None
            if self.breaker is not None:
                self.breaker.release_connection()
            if isinstance(exc, UpstreamConnectError) and conn.loop.time() >= deadline:
                raise UpstreamTimeout(
                    f"the request's timeout passed while connecting ({exc})"
                ) from None
            raise
        self._opened(conn)
        return conn

    def _lost(self) -> None:
        """A connection of this pool closed: uncount it, give its unit back."""
        self.open -= 1
        if self.breaker is not None:
            self.breaker.release_connection()
