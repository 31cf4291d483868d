"""The span handles the data path holds, one per request side: a no-op for tracing off
or a decision not to sample (`DISABLED`, and the unsampled kinds that still write the
trace context on), and `Recording` for a sampled span, which fills a `SpanRecord`
(span_record.py) and hands it to the exporter's sink when it ends. A sampled outbound
span makes a child client span per try with `attempt()` (attempts.py). `Tracing`
(tracing.py) decides which handle a request gets.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from time import time_ns
from typing import Any

from opentelemetry.trace import SpanKind

from gossamer.proxy.telemetry import semconv as sc
from gossamer.proxy.telemetry import trace_context as tc
from gossamer.proxy.telemetry.span_record import SpanRecord

Headers = list[tuple[bytes, bytes]]
SERVER_KIND = SpanKind.SERVER
CLIENT_KIND = SpanKind.CLIENT
PEER_IDENTITY = sc.PEER_IDENTITY
W3C_ONLY = (tc.W3C,)
TRACEPARENT = b"traceparent"
UNSAMPLED_ROOT = b"00-%032x-%016x-00"  # traceparent of a new trace, not sampled


class SpanHandle:
    """What the proxy holds for one request. The no-op variants share this interface."""

    __slots__ = ()
    sampled = False

    def inject(self, headers: Headers) -> None:
        """Write this span's context into the headers of the request it forwards."""

    def set_attribute(self, key: str, value: Any) -> None:
        """Add an attribute (ignored unless sampled)."""

    def set_peer(self, spiffe_id: str | None) -> None:
        """The peer's SPIFFE ID, once known (e.g. after the upstream TLS handshake)."""

    def end(self, status: int | None, error_type: str | None = None) -> None:
        """Finish the span with the response status, or `error_type` when none came."""

    def rename(self, name: str) -> None:
        """Set the span's name (once the route is known)."""

    def add_event(self, name: str, attributes: dict[str, Any] | None = None) -> None:
        """Record an event (now) on the span."""

    def attempt(self) -> SpanHandle:
        """A child client span for the next try of this (logical) request; no-op here."""
        return self

    @property
    def trace_id(self) -> int:
        return 0


DISABLED = SpanHandle()


class UnsampledRoot(SpanHandle):
    """A new trace that is not sampled: propagate the decision, record nothing."""

    __slots__ = ("_formats", "_had", "_span_id", "_trace_id")

    def __init__(self, trace_id: int, span_id: int, formats: tuple[str, ...], had: bool) -> None:
        self._trace_id, self._span_id, self._formats, self._had = trace_id, span_id, formats, had

    def inject(self, headers: Headers) -> None:
        if not self._had and self._formats == W3C_ONLY:  # the common case, kept cheap
            headers.append((TRACEPARENT, UNSAMPLED_ROOT % (self._trace_id, self._span_id)))
            return
        tc.inject(
            headers,
            self._trace_id,
            self._span_id,
            False,
            self._formats,
            had_trace_headers=self._had,
        )

    @property
    def trace_id(self) -> int:
        return self._trace_id


class Unsampled(SpanHandle):
    """A trace someone else decided not to sample: leave the headers as they are."""

    __slots__ = ("_trace_id",)

    def __init__(self, trace_id: int) -> None:
        self._trace_id = trace_id

    @property
    def trace_id(self) -> int:
        return self._trace_id


class UnsampledW3C(SpanHandle):
    """Like Unsampled, for a W3C parent; its trace id is decoded only if asked for."""

    __slots__ = ("_traceparent",)

    def __init__(self, traceparent: bytes) -> None:
        self._traceparent = traceparent

    @property
    def trace_id(self) -> int:
        return int(self._traceparent.strip()[3:35], 16)


class Recording(SpanHandle):
    """A sampled span: a SpanRecord filled on the request path, handed to the export
    queue (`sink`) when it ends."""

    __slots__ = ("_formats", "_had", "_record", "_sink")
    sampled = True

    def __init__(
        self,
        record: SpanRecord,
        formats: tuple[str, ...],
        had: bool,
        sink: Callable[[SpanRecord], None],
    ) -> None:
        self._record = record
        self._formats = formats
        self._had = had
        self._sink = sink

    @property
    def trace_id(self) -> int:
        return self._record.trace_id

    def inject(self, headers: Headers) -> None:
        rec = self._record
        tc.inject(
            headers,
            rec.trace_id,
            rec.span_id,
            True,
            self._formats,
            tracestate=rec.tracestate,
            parent_id=rec.parent_id,
            had_trace_headers=self._had,
        )

    def set_attribute(self, key: str, value: Any) -> None:
        self._record.attributes[key] = value

    def set_peer(self, spiffe_id: str | None) -> None:
        if spiffe_id:
            self._record.attributes[PEER_IDENTITY] = spiffe_id

    def rename(self, name: str) -> None:
        self._record.name = name

    def add_event(self, name: str, attributes: dict[str, Any] | None = None) -> None:
        rec = self._record
        if rec.events is None:
            rec.events = []
        rec.events.append((time_ns(), name, attributes or {}))

    def attempt(self) -> SpanHandle:
        """The next try: a client span under this one, with the request's method, path,
        scheme, server and route; the try's number after `#` in its name (counted in
        `gossamer.attempts` here), and from the second on `http.request.resend_count`
        and the reason the retry layer noted (`gossamer.retry.reason`)."""
        rec = self._record
        number = rec.attributes.get(sc.ATTEMPTS, 0) + 1
        rec.attributes[sc.ATTEMPTS] = number
        attrs = {k: v for k, v in rec.attributes.items() if k in _ATTEMPT_INHERITS}
        if number > 1:
            attrs[sc.HTTP_RESEND_COUNT] = number - 1
            reason = rec.attributes.get(sc.RETRY_REASON)
            if reason is not None:
                attrs[sc.RETRY_REASON] = reason
        child = SpanRecord(
            sc.attempt_span_name(rec.name, number), CLIENT_KIND, rec.trace_id,
            _new_span_id(), rec.span_id, rec.tracestate, attrs, time_ns(),
        )  # fmt: skip
        child.local_parent = True
        return Recording(child, self._formats, True, self._sink)

    def end(self, status: int | None, error_type: str | None = None) -> None:
        rec = self._record
        if rec.end_ns:
            return  # ended already
        attrs = rec.attributes
        failed = False
        if status is not None and status > 0:
            attrs[sc.HTTP_STATUS] = status
            # semconv: 5xx is an error on both sides, 4xx only on the client side
            failed = status >= 500 or (status >= 400 and rec.kind is CLIENT_KIND)
            if failed and error_type is None:
                error_type = str(status)
        if error_type is not None:
            attrs[sc.ERROR_TYPE] = error_type
            failed = True
        rec.failed = failed
        rec.end_ns = time_ns()
        self._sink(rec)


_ATTEMPT_INHERITS = frozenset(
    {sc.HTTP_METHOD, sc.URL_PATH, sc.URL_SCHEME, sc.SERVER_ADDRESS, sc.SERVER_PORT,
     sc.NETWORK_PROTOCOL_VERSION, sc.HTTP_ROUTE, sc.UPSTREAM_CLUSTER, sc.DESTINATION}
)  # fmt: skip
_attempt_ids = random.Random(os.urandom(16))


def _new_span_id() -> int:
    """An attempt span's id (attempt spans are only made for sampled requests)."""
    span_id = 0
    while not span_id:
        span_id = _attempt_ids.getrandbits(64)
    return span_id
