"""Circuit breaking: per-cluster limits on connections, pending requests, active
requests and active retries (Envoy's circuit_breakers thresholds, default priority).

One `CircuitBreaker` per cluster name lives across configuration updates (its counts
are of things in flight); a new configuration only changes its `limits`. Accounting is
synchronous and O(1): `try_acquire_*` takes a unit if the limit allows, `release_*`
gives it back. A request over a limit is answered at once (`Overflow`: 503 with
`x-gossamer-error: overflow`), never queued without bound.

    with breaker.request():            # raises Overflow when max_requests are active
        ...
    if breaker.try_acquire_retry(): ...; breaker.release_retry()

Connections: a new connection takes a unit of `max_connections`. When none is left the
request becomes pending (`await breaker.wait_connection(timeout)`), at most
`max_pending_requests` of them; a pending request is woken when a connection of the
cluster closes or has room again (an idle HTTP/1.1 one, an HTTP/2 one whose stream
ended), and then reuses it or opens one. So that idle connections to one endpoint
cannot hold every unit while a request for another waits, a pending request first
asks `reclaim` to close one idle connection of the cluster. The HTTP/1.1 and HTTP/2
pools (pool_base.py) and the TCP relays (outbound.py) share this API;
`on_overflow(limit)` (metrics) is told which limit refused.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Iterator

from gossamer.proxy.config import BreakerLimits
from gossamer.proxy.service import Overflow

CONNECTIONS = "max_connections"
PENDING = "max_pending_requests"
REQUESTS = "max_requests"
RETRIES = "max_retries"


class CircuitBreaker:
    __slots__ = (
        "_waiters",
        "connections",
        "limits",
        "name",
        "on_overflow",
        "pending",
        "reclaim",
        "requests",
        "retries",
    )

    def __init__(
        self,
        name: str,
        limits: BreakerLimits | None = None,
        on_overflow: Callable[[str], None] | None = None,
    ) -> None:
        self.name = name
        self.limits = limits or BreakerLimits()
        self.on_overflow = on_overflow
        self.connections = 0
        self.pending = 0
        self.requests = 0
        self.retries = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        # closes an idle connection of the cluster (any endpoint) to free a unit for a
        # request that must wait; its close wakes the waiter (set by the cluster manager)
        self.reclaim: Callable[[], bool] | None = None

    def _overflow(self, limit: str) -> bool:
        if self.on_overflow is not None:
            self.on_overflow(limit)
        return False

    # -- requests ------------------------------------------------------------------
    def try_acquire_request(self) -> bool:
        limit = self.limits.max_requests
        if limit is not None and self.requests >= limit:
            return self._overflow(REQUESTS)
        self.requests += 1
        return True

    def release_request(self) -> None:
        self.requests -= 1

    @contextlib.contextmanager
    def request(self) -> Iterator[None]:
        """One active request for the block; Overflow when over `max_requests`."""
        if not self.try_acquire_request():
            raise Overflow(f"{self.name}: max_requests ({self.limits.max_requests}) reached")
        try:
            yield
        finally:
            self.release_request()

    # -- retries -------------------------------------------------------------------
    def try_acquire_retry(self) -> bool:
        limit = self.limits.max_retries
        if limit is not None and self.retries >= limit:
            return self._overflow(RETRIES)
        self.retries += 1
        return True

    def release_retry(self) -> None:
        self.retries -= 1

    # -- connections ---------------------------------------------------------------
    def try_acquire_connection(self) -> bool:
        """A unit for a new connection, without counting an overflow (the caller may
        still wait as a pending request)."""
        limit = self.limits.max_connections
        if limit is not None and self.connections >= limit:
            return False
        self.connections += 1
        return True

    def connection_refused(self) -> Overflow:
        """The error for a connection over the limit that may not wait (TCP)."""
        self._overflow(CONNECTIONS)
        return Overflow(f"{self.name}: max_connections ({self.limits.max_connections}) reached")

    def release_connection(self) -> None:
        self.connections -= 1
        self.notify()

    async def wait_connection(self, timeout: float) -> None:
        """Wait as a pending request until a connection closes or goes idle (then try
        again); Overflow at once when `max_pending_requests` are already waiting."""
        limit = self.limits.max_pending_requests
        if limit is not None and self.pending >= limit:
            self._overflow(PENDING)
            raise Overflow(f"{self.name}: max_pending_requests ({limit}) reached")
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self.pending += 1
        if self.reclaim is not None:
            self.reclaim()
        try:
            async with asyncio.timeout(timeout if timeout != float("inf") else None):
                await waiter
        finally:
            self.pending -= 1
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    def notify(self) -> None:
        """A connection closed or went idle: wake the longest-waiting pending request."""
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    @property
    def has_waiters(self) -> bool:
        return bool(self._waiters)

    def state(self) -> dict[str, int | None]:
        """Counts and limits, for /clusters."""
        lim = self.limits
        return {
            "connections": self.connections,
            "max_connections": lim.max_connections,
            "pending": self.pending,
            "max_pending_requests": lim.max_pending_requests,
            "requests": self.requests,
            "max_requests": lim.max_requests,
            "retries": self.retries,
            "max_retries": lim.max_retries,
        }


__all__ = ["CONNECTIONS", "PENDING", "REQUESTS", "RETRIES", "CircuitBreaker"]
