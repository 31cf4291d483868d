"""Stream idle and request timeouts of the sidecar's HTTP servers (Envoy's semantics).

A downstream request stream (an HTTP/1.1 request being served, an HTTP/2 stream) is cut
when it stalls:
- idle (`stream_idle_timeout`, or the route's `idle_timeout`): no byte received or sent
  on it for that long;
- request (`request_timeout`): its head and body have not all arrived that long after
  the head did, and no response has started.
Before the response has started the client gets 408 (`x-gossamer-error:
stream-idle-timeout` or `request-timeout`), after it the stream is reset; either way
the request's task is cancelled, which aborts the upstream exchange, so the app sees
the request end and its connection is released. Each cut is logged and counted
(`gossamer_downstream_stream_timeouts_total{listener, reason}`).

No timer per request or per chunk: the servers stamp `StreamClock.active_at` when
bytes move and the `ConnectionTracker`'s sweep (twice a second) calls `next_due` for a
connection whose deadline has passed; the first check of a request comes at the sweep
after it started (when its route is known), later ones at the moment it may be due.
"""

from __future__ import annotations

from collections.abc import Callable

from gossamer.proxy.config import StreamTimeouts
from gossamer.proxy.service import Request, Response

__all__ = [
    "IDLE",
    "REASONS",
    "REQUEST",
    "StreamClock",
    "StreamTimeouts",
    "TimeoutObserver",
    "TimeoutSource",
    "next_due",
]

_INF = float("inf")
IDLE = b"stream-idle-timeout"
REQUEST = b"request-timeout"

# a request's stream timeouts (its listener's, in the snapshot it started with); None:
# not known yet (no configuration)
TimeoutSource = Callable[[Request], StreamTimeouts | None]
# told of each cut: (listener, reason "idle" or "request"), for the metric
TimeoutObserver = Callable[[str, str], None]
REASONS = {IDLE: "idle", REQUEST: "request"}


class StreamClock:
    """One request stream's timing: when bytes last moved on it, and its response once
    that has started (None before)."""

    __slots__ = ("active_at", "req", "response")

    def __init__(self, req: Request, now: float) -> None:
        self.req = req
        self.active_at = now
        self.response: Response | None = None


def next_due(clock: StreamClock, timeouts: StreamTimeouts) -> tuple[float, bytes]:
    """When the stream is to be cut if nothing changes, and why (IDLE or REQUEST);
    (inf, b"") when no limit applies."""
    req = clock.req
    route = req.route
    idle = timeouts.idle
    if route is not None and route.idle_timeout is not None:
        idle = route.idle_timeout
    due, why = (clock.active_at + idle, IDLE) if idle else (_INF, b"")
    limit = timeouts.request
    if limit and clock.response is None:
        body = req.body
        if body is not None and not body.stream.done and req.start + limit < due:
            due, why = req.start + limit, REQUEST
    return due, why
