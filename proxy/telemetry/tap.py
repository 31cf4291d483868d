"""The sidecar's side of `gossamer tap`: filter, cap and queue live request records.

The control plane opens taps over the Tap stream (proxy/agent/tap_stream.py calls
`Tap.open` / `Tap.close`). The telemetry layers (telemetry/layers.py) ask one question
per finished HTTP request, `tap.active` (an attribute: no call, no allocation while no
tap is open), and only when it is true call `Tap.offer`, which matches the request
against each open tap's filter (direction, destination service, path prefix, method),
takes a token from that tap's bucket (`TokenBucket`: at most `rate` records a second,
`DEFAULT_RATE` = 100 and never more) and appends a record to a bounded queue
(`QUEUE_LIMIT`). Over the cap, or with the queue full, the record is dropped and
counted (`gossamer_tap_records_dropped_total`, and in the next batch): a tap never
slows a request and `offer` never awaits. The stream's sender takes batches with
`drain()`.

A record (`TapRecord` of mesh.proto): start time, direction, source and destination
SPIFFE IDs, method, authority, path without its query string, status, latency (request
head to response head), `bytes` (the response body's declared Content-Length; -1 when
the body is streamed without one), trace id and whether it is sampled (from the
`traceparent` the request carries or was given). Header values and bodies are never
read. TCP relays (`protocol: tcp` ports, tunnels) produce no records.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from gossamer.contract import mesh_pb2

DEFAULT_RATE = 100  # records per second per tap per sidecar, the most a tap may ask
QUEUE_LIMIT = 2048  # records waiting for the sender, over every tap
DIRECTIONS = ("inbound", "outbound")

Headers = list[tuple[bytes, bytes]]


class TokenBucket:
    """`rate` tokens a second, at most `rate` (min 1) kept; `take` never waits."""

    __slots__ = ("capacity", "clock", "rate", "stamp", "tokens")

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.clock = clock
        self.stamp = clock()

    def take(self) -> bool:
        now = self.clock()
        tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if tokens < 1.0:
            self.tokens = tokens
            return False
        self.tokens = tokens - 1.0
        return True


@dataclass(frozen=True)
class TapFilter:
    """Which requests a tap wants; empty fields match anything."""

    direction: str = ""
    to: str = ""  # the destination's service name
    path_prefix: str = ""
    method: str = ""

    @classmethod
    def of(cls, command: mesh_pb2.TapOpen) -> TapFilter:
        return cls(command.direction, command.to, command.path_prefix, command.method.upper())

    def matches(self, direction: str, to: str, path: str, method: str) -> bool:
        return (
            (not self.direction or self.direction == direction)
            and (not self.to or self.to == to)
            and path.startswith(self.path_prefix)
            and (not self.method or self.method == method)
        )


class OpenTap:
    __slots__ = ("bucket", "dropped", "filter", "id", "sent")

    def __init__(self, tap_id: str, flt: TapFilter, bucket: TokenBucket) -> None:
        self.id, self.filter, self.bucket = tap_id, flt, bucket
        self.dropped = 0  # since the last batch
        self.sent = 0


def service_of(spiffe_id: str) -> str:
    """`spiffe://td/ns/N/sa/S` -> S ("" for none)."""
    return spiffe_id.rsplit("/", 1)[-1] if spiffe_id else ""


def trace_of(headers: Headers) -> tuple[str, bool]:
    """The W3C trace id and sampled flag of the request's `traceparent`, if any."""
    for name, value in headers:
        if len(name) == 11 and name.lower() == b"traceparent":
            parts = value.strip().split(b"-")
            if len(parts) >= 4 and len(parts[1]) == 32 and len(parts[3]) >= 2:
                try:
                    return parts[1].decode("ascii"), bool(int(parts[3][:2], 16) & 1)
                except ValueError:
                    return "", False
            return "", False
    return "", False


def build_record(
    *,
    start_wall: float,
    direction: str,
    source: str,
    destination: str,
    method: str,
    authority: str,
    path: bytes | str,
    status: int,
    seconds: float,
    content_length: int | None,
    headers: Headers,
) -> mesh_pb2.TapRecord:
    """One record; the query string is cut off, headers give only the trace context."""
    if isinstance(path, bytes):
        path = path.decode("latin-1")
    trace_id, sampled = trace_of(headers)
    return mesh_pb2.TapRecord(
        ts=round(start_wall, 6),
        direction=direction,
        source=source,
        destination=destination,
        method=method,
        authority=authority,
        path=path.partition("?")[0].partition("#")[0],
        status=status,
        latency_ms=round(seconds * 1000, 3),
        bytes=content_length if content_length is not None else -1,
        trace_id=trace_id,
        sampled=sampled,
    )


class Tap:
    """The taps open on this sidecar and the records waiting to be sent."""

    def __init__(
        self,
        *,
        max_rate: int = DEFAULT_RATE,
        queue_limit: int = QUEUE_LIMIT,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.active = False  # the data path's one check
        self.max_rate = max_rate
        self.queue_limit = queue_limit
        self.clock = clock
        self.wall = wall
        self.taps: dict[str, OpenTap] = {}
        self.queue: list[tuple[str, mesh_pb2.TapRecord]] = []
        self.records_total = 0  # records queued for the control plane
        self.dropped_total = 0  # records over a cap or the queue limit
        self.offered_total = 0  # requests looked at while a tap was open

    # -- commands ----------------------------------------------------------------------
    def open(self, command: mesh_pb2.TapOpen) -> OpenTap:
        rate = min(command.rate or self.max_rate, self.max_rate)
        tap = OpenTap(command.id, TapFilter.of(command), TokenBucket(rate, self.clock))
        self.taps[command.id] = tap
        self.active = True
        return tap

    def close(self, tap_id: str) -> None:
        self.taps.pop(tap_id, None)
        self.active = bool(self.taps)
        if not self.active:
            self.queue.clear()

    def close_all(self) -> None:
        self.taps.clear()
        self.queue.clear()
        self.active = False

    # -- the data path (only while `active`) --------------------------------------------
    def offer(
        self,
        direction: str,
        source: str,
        destination: str,
        to_service: str,
        method: str,
        authority: str,
        path: bytes,
        status: int,
        seconds: float,
        content_length: int | None,
        headers: Headers,
    ) -> None:
        self.offered_total += 1
        text = path.decode("latin-1")
        bare = text.partition("?")[0]
        record: mesh_pb2.TapRecord | None = None
        for tap in self.taps.values():  # offer never awaits: no open/close meanwhile
            if not tap.filter.matches(direction, to_service, bare, method):
                continue
            if not tap.bucket.take() or len(self.queue) >= self.queue_limit:
                tap.dropped += 1
                self.dropped_total += 1
                continue
            if record is None:
                record = build_record(
                    start_wall=self.wall() - seconds, direction=direction, source=source,
                    destination=destination, method=method, authority=authority, path=bare,
                    status=status, seconds=seconds, content_length=content_length,
                    headers=headers,
                )  # fmt: skip
            self.queue.append((tap.id, record))
            tap.sent += 1
            self.records_total += 1

    # -- the sender ------------------------------------------------------------------------
    def drain(self) -> list[mesh_pb2.TapReport]:
        """The queued records as one report per tap (with its drops since the last)."""
        queued, self.queue = self.queue, []
        reports: dict[str, mesh_pb2.TapReport] = {}
        for tap_id, record in queued:
            report = reports.get(tap_id)
            if report is None:
                report = reports[tap_id] = mesh_pb2.TapReport(tap_id=tap_id)
            report.records.append(record)
        for tap in self.taps.values():
            if tap.dropped:
                report = reports.get(tap.id)
                if report is None:
                    report = reports[tap.id] = mesh_pb2.TapReport(tap_id=tap.id)
                report.dropped, tap.dropped = tap.dropped, 0
        return [r for tid, r in reports.items() if tid in self.taps]
