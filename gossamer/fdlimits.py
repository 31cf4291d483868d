"""File descriptors: the process's limit, and a cap on one listener's connections.

`raise_nofile_limit()` lifts RLIMIT_NOFILE's soft limit to the hard limit (the sidecar
and the control plane call it at start): the soft limit is often 1024, which a few
hundred clients exhaust, while the hard limit is what the operator actually granted.

`ConnectionLimit` caps the connections a listener holds open. Wrap the listener's
protocol factory with `limit.wrap(factory)`; each accepted connection is counted until
its transport closes. Over the cap, a new connection either takes the place of the
oldest connection still *unproven* (one that has not yet shown it is a real client: a
TLS handshake not finished, no complete request head yet), which is aborted, or, when
there is none, is itself closed at once. Either way `on_overflow()` is called, and
`on_report(count)` at most once per `report_interval` seconds with the number of
overflows since the last report (for a rate-limited log line).

Theory of operation: asyncio has no hook for "this transport closed" that survives the
protocol handing the transport to another protocol (`set_protocol`, as the sidecar's
listeners do), so the limit keeps the open transports in a `WeakSet` and counts a
closing transport as gone when it needs the exact number: only at the cap, and at most
once per `recount_interval` (a flood at the cap then costs one pass over the set every
0.1 s, not one per connection). Unproven connections are marked with `unproven()` by
the listener's protocol, or all connections with `evict_new=True`, and `proven()`
removes the mark. A protocol that sees its connection end calls `closed()`, which
makes the count exact at once.
"""

from __future__ import annotations

import asyncio
import resource
import time
import weakref
from collections.abc import Callable
from typing import Any

RECOUNT_INTERVAL = 0.1
REPORT_INTERVAL = 10.0


def raise_nofile_limit() -> tuple[int, int]:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit; return (soft, hard) after.

    A hard limit of RLIM_INFINITY is not a number the kernel accepts as a soft limit
    for files; the soft limit is then left as it is."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard not in (resource.RLIM_INFINITY, soft):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (OSError, ValueError):
            pass
    return soft, hard


def nofile_limit() -> int:
    """The process's current soft limit on open files."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class ConnectionLimit:
    """At most `max_connections` open connections on one listener (0: no limit)."""

    def __init__(
        self,
        max_connections: int,
        *,
        evict_new: bool = False,
        on_overflow: Callable[[], None] | None = None,
        on_report: Callable[[int], None] | None = None,
        report_interval: float = REPORT_INTERVAL,
        recount_interval: float = RECOUNT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_connections = max_connections
        self.evict_new = evict_new  # every new connection starts unproven
        self.overflows = 0
        self._on_overflow = on_overflow
        self._on_report = on_report
        self._report_interval = report_interval
        self._recount_interval = recount_interval
        self._clock = clock
        self._open: weakref.WeakSet[Any] = weakref.WeakSet()
        self._opening: weakref.WeakSet[_Admit] = weakref.WeakSet()
        # insertion-ordered: the oldest unproven connection is the first key
        self._unproven: weakref.WeakKeyDictionary[Any, None] = weakref.WeakKeyDictionary()
        self._next_recount = 0.0
        self._next_report = 0.0
        self._unreported = 0

    @property
    def open(self) -> int:
        """Connections counted now (closing ones may still be counted until a recount)."""
        return len(self._open) + len(self._opening)

    def wrap(
        self, factory: Callable[[], asyncio.BaseProtocol]
    ) -> Callable[[], asyncio.BaseProtocol]:
        """The listener's protocol factory, with the cap in front of it."""
        if self.max_connections <= 0:
            return factory

        def admit() -> asyncio.BaseProtocol:
            if self.open >= self.max_connections and not self._make_room():
                self._overflowed()
                return _Reject()
            protocol = _Admit(self, factory())
            self._opening.add(protocol)
            return protocol

        return admit

    def unproven(self, transport: Any) -> None:
        """Mark a connection as one a newcomer may displace when the listener is full."""
        self._unproven[transport] = None

    def proven(self, transport: Any) -> None:
        """The connection showed it is a real client: never displace it."""
        self._unproven.pop(transport, None)

    def closed(self, transport: Any) -> None:
        """The connection closed (for protocols that can tell: exact counting, where
        otherwise a closed transport counts until the next recount)."""
        self._open.discard(transport)
        self._unproven.pop(transport, None)

    # -- internals -------------------------------------------------------------------
    def _made(self, admit: _Admit, transport: Any) -> None:
        self._opening.discard(admit)
        self._open.add(transport)
        if self.evict_new:
            self._unproven[transport] = None

    def _make_room(self) -> bool:
        """At the cap: forget closed connections (a recount at most every
        `recount_interval`), else abort the oldest unproven one; True if there is room."""
        now = self._clock()
        if now >= self._next_recount:
            self._next_recount = now + self._recount_interval
            for transport in list(self._open):
                if transport.is_closing():
                    self._open.discard(transport)
            if self.open < self.max_connections:
                return True
        unproven = self._unproven
        while unproven:
            transport = next(iter(unproven))
            del unproven[transport]
            self._open.discard(transport)
            if not transport.is_closing():
                transport.abort()
                self._overflowed()
                return True
            if self.open < self.max_connections:
                return True
        return False

    def _overflowed(self) -> None:
        self.overflows += 1
        if self._on_overflow is not None:
            self._on_overflow()
        self._unreported += 1
        now = self._clock()
        if now >= self._next_report:
            self._next_report = now + self._report_interval
            if self._on_report is not None:
                self._on_report(self._unreported)
            self._unreported = 0


class _Admit(asyncio.Protocol):
    """Counts the transport, then hands it to the listener's own protocol at once."""

    __slots__ = ("__weakref__", "inner", "limit")

    def __init__(self, limit: ConnectionLimit, inner: asyncio.BaseProtocol) -> None:
        self.limit = limit
        self.inner = inner

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.limit._made(self, transport)
        transport.set_protocol(self.inner)
        self.inner.connection_made(transport)


class _Reject(asyncio.Protocol):
    """Over the cap: the connection is closed as soon as it is made."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.abort()  # type: ignore[attr-defined]
