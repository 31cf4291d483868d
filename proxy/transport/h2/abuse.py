"""Per-connection budgets against abusive HTTP/2 clients (rapid reset, CVE-2023-44487,
and frame floods), the pure counting behind `H2Server`.

Theory of operation. HTTP/2 lets a client make the server work for almost nothing: a
HEADERS + RST_STREAM pair costs it 30 bytes and the sidecar a `Request`, a task and
the start of a call upstream; a PING or SETTINGS costs the sidecar an ACK it must queue.
Each connection has an `AbuseGuard`; the server calls it when such a thing happens and
closes the connection with GOAWAY(ENHANCE_YOUR_CALM) when a method returns a reason:

- **Premature resets** (Envoy's `overload.premature_reset_*`): a stream the client resets
  before its response has ended and less than `premature_reset_lifetime` seconds after
  it started, or one the server refused (over `max_concurrent_streams`), is premature.
  Once `premature * 100 >= max(closed, premature_reset_min_streams) *
  premature_reset_percent`, the connection is abusive: with the defaults, 250 premature
  streams among the first 500, or half of all streams after that.
- **RST_STREAM rate** (nghttp2's `stream_reset_rate_limit`): a token bucket of
  `reset_burst` tokens refilled at `reset_rate` per second; each RST_STREAM received
  takes one.
- **Frame floods** (nghttp2's "glitches", Envoy's empty-payload limit): PING, SETTINGS,
  PRIORITY, unknown frames and DATA frames that carry nothing and do not end their
  stream share a second bucket (`flood_burst`, `flood_rate`). WINDOW_UPDATE is not
  counted: a client downloading legitimately sends one per DATA frame it reads.

Bounded elsewhere, named here: `max_concurrent_streams` (SETTINGS_MAX_CONCURRENT_STREAMS;
streams whose handler tasks have not finished, beyond it a new stream gets
REFUSED_STREAM), `max_write_backlog` (bytes queued for a client that does not read:
ACKs, headers, data; over it the connection is aborted, `conn.H2Base`), CONTINUATION
floods (CVE-2024-27316: the `h2` package refuses a header block of more than 64
CONTINUATION frames with a connection error) and request bodies (flow control: at most
the connection window per connection).

Costs on the hot path: an integer decrement per counted frame; the clock is read only
when a bucket runs dry or a client resets a stream.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gossamer.contract import limits

# Reasons, the `reason` label of gossamer_downstream_h2_abuse_closed_total
PREMATURE_RESETS = "premature_resets"
RESET_FLOOD = "reset_flood"
FRAME_FLOOD = "frame_flood"
WRITE_BACKLOG = "write_backlog"


@dataclass(frozen=True, slots=True)
class H2Limits:
    """What one downstream HTTP/2 connection may cost the sidecar (see the module doc)."""

    # streams in progress (handler task not finished); more get REFUSED_STREAM. Advertised
    # as SETTINGS_MAX_CONCURRENT_STREAMS (RFC 9113 recommends at least 100; Go uses 250)
    max_concurrent_streams: int = limits.H2_MAX_CONCURRENT_STREAMS  # --h2-max-concurrent-streams
    # Envoy's defaults: 500 streams, 50 %, 1 s
    premature_reset_min_streams: int = 500
    premature_reset_percent: int = 50
    premature_reset_lifetime: float = 1.0
    # nghttp2's defaults for RST_STREAM: 1000 at once, 33 per second after that
    reset_burst: int = 1000
    reset_rate: float = 33.0
    # PING, SETTINGS, PRIORITY, unknown and empty DATA frames
    flood_burst: int = 1000
    flood_rate: float = 100.0
    # bytes written but not yet taken by a client that stopped reading
    max_write_backlog: int = 16 * 1048576


DEFAULT_H2_LIMITS = H2Limits()


class TokenBucket:
    """`burst` tokens, refilled at `rate` per second; refilled lazily, only when empty,
    so taking a token is a decrement and a comparison."""

    __slots__ = ("_clock", "_stamp", "burst", "rate", "tokens")

    def __init__(self, burst: int, rate: float, clock: Callable[[], float]) -> None:
        self.burst = burst
        self.rate = rate
        self.tokens = float(burst)
        self._clock = clock
        self._stamp = clock()

    def take(self) -> bool:
        """Take one token; False when none is left even after refilling."""
        self.tokens -= 1
        if self.tokens >= 0:
            return True
        now = self._clock()
        self.tokens = min(self.burst - 1.0, self.tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self.tokens >= 0:
            return True
        self.tokens += 1  # a refused take costs nothing
        return False


class AbuseGuard:
    """One connection's budgets. Each method returns None, or the reason (a module
    constant) why the connection should be closed with ENHANCE_YOUR_CALM."""

    __slots__ = ("_floods", "_resets", "closed", "limits", "premature")

    def __init__(self, limits: H2Limits, clock: Callable[[], float]) -> None:
        self.limits = limits
        self.closed = 0  # streams ended (answered, reset or refused)
        self.premature = 0  # ... of which reset early by the client, or refused
        self._resets = TokenBucket(limits.reset_burst, limits.reset_rate, clock)
        self._floods = TokenBucket(limits.flood_burst, limits.flood_rate, clock)

    def stream_closed(self, premature: bool) -> str | None:
        """A stream ended; `premature`: reset by the client early, or refused."""
        self.closed += 1
        if not premature:
            return None
        self.premature += 1
        lim = self.limits
        floor = max(self.closed, lim.premature_reset_min_streams)
        if self.premature * 100 >= floor * lim.premature_reset_percent:
            return PREMATURE_RESETS
        return None

    def is_premature(self, age: float) -> bool:
        """Whether a reset `age` seconds after the stream started, before its response
        ended, counts as premature."""
        return age < self.limits.premature_reset_lifetime

    def reset_received(self) -> str | None:
        """The client sent RST_STREAM."""
        return None if self._resets.take() else RESET_FLOOD

    def flood_frame(self) -> str | None:
        """PING, SETTINGS, PRIORITY, an unknown frame, or DATA with nothing in it (and no
        END_STREAM)."""
        return None if self._floods.take() else FRAME_FLOOD


class LogThrottle:
    """At most one log line per `interval` seconds: an attacker reconnecting in a loop
    must not turn each closed connection into a line on disk."""

    __slots__ = ("_next", "_suppressed", "interval")

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._next = float("-inf")
        self._suppressed = 0

    def allow(self, now: float) -> int | None:
        """None when this event should not be logged; otherwise how many were not
        logged since the last line."""
        if now < self._next:
            self._suppressed += 1
            return None
        self._next = now + self.interval
        suppressed, self._suppressed = self._suppressed, 0
        return suppressed
