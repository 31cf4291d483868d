"""Spans for the sidecar: server span on inbound, client span on outbound
(docs/architecture.md, "The request path").

Theory of operation:
- The sampling decision is made here, before any SDK object exists, so the common
  case (not sampled, 99% at the default 1%) costs a header scan and nothing else:
  parent-based (`OTEL_TRACES_SAMPLER`, default `parentbased_traceidratio` with
  `OTEL_TRACES_SAMPLER_ARG` 0.01): a parent's decision is followed; a root (or a B3
  parent that defers) is sampled when the low 64 bits of its trace id fall under
  ratio * 2**64, the rule of OpenTelemetry's TraceIdRatioBased, so every hop of a
  deferred trace reaches the same answer.
- Not sampled, with a context: the headers already say "not sampled", the span handle
  is a no-op. Not sampled, no context: a new trace id and span id are made and written
  with the sampled flag off, so the next hops follow the decision instead of starting
  traces of their own (W3C only: such roots are drawn and formatted 64 at a time,
  trace_roots.py). Tracing disabled: the handle never touches the headers.
- The data path asks `unsampled(headers)` first: for the 99% no handle is made at all.
- Sampled: a `SpanRecord` (span_record.py) with the stable HTTP semantic-convention
  attributes, filled on the request path; a root span keeps the trace id its decision
  was made on. The sidecar's OTLP exporter writes the records' protobuf itself
  (otlp_encode.py) on the export thread; for any other exporter an OpenTelemetry SDK
  `ReadableSpan` (resource `service.name` etc.) is made from each there.
- A sampled outbound request's handle makes a child client span per try
  (`attempt()`, used by attempts.py); names and attribute keys: semconv.py.
- Finished spans go to `DroppingBatchProcessor` (trace_export.py): a bounded queue
  drained by a thread that exports batches over OTLP/gRPC; when the queue is full
  (collector slow or down) spans are dropped and counted, never waited for.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Mapping
from time import time_ns
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.trace import SpanKind

from gossamer.proxy.telemetry import semconv as sc
from gossamer.proxy.telemetry import trace_context as tc
from gossamer.proxy.telemetry.span_record import SpanRecord, ToReadableSpan
from gossamer.proxy.telemetry.trace_context import Sampler, is_unsampled_traceparent
from gossamer.proxy.telemetry.trace_export import DroppingBatchProcessor, TracingSettings
from gossamer.proxy.telemetry.trace_roots import RootIds

Headers = list[tuple[bytes, bytes]]
__all__ = ["DISABLED", "Sampler", "SpanHandle", "Tracing"]
_SERVER = SpanKind.SERVER
_CLIENT = SpanKind.CLIENT
PEER_IDENTITY = sc.PEER_IDENTITY
_W3C_ONLY = (tc.W3C,)
_TRACEPARENT = b"traceparent"
_UNSAMPLED_ROOT = b"00-%032x-%016x-00"  # traceparent of a new trace, not sampled


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


class _UnsampledRoot(SpanHandle):
    """A new trace that is not sampled: propagate the decision, record nothing."""

    __slots__ = ("_formats", "_had", "_span_id", "_trace_id")

    def __init__(self, trace_id: int, span_id: int, formats: tuple[str, ...], had: bool) -> None:
        self._trace_id, self._span_id, self._formats, self._had = trace_id, span_id, formats, had

    def inject(self, headers: Headers) -> None:
        if not self._had and self._formats == _W3C_ONLY:  # the common case, kept cheap
            headers.append((_TRACEPARENT, _UNSAMPLED_ROOT % (self._trace_id, self._span_id)))
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


class _Unsampled(SpanHandle):
    """A trace someone else decided not to sample: leave the headers as they are."""

    __slots__ = ("_trace_id",)

    def __init__(self, trace_id: int) -> None:
        self._trace_id = trace_id

    @property
    def trace_id(self) -> int:
        return self._trace_id


class _UnsampledW3C(SpanHandle):
    """Like _Unsampled, for a W3C parent; its trace id is decoded only if asked for."""

    __slots__ = ("_traceparent",)

    def __init__(self, traceparent: bytes) -> None:
        self._traceparent = traceparent

    @property
    def trace_id(self) -> int:
        return int(self._traceparent.strip()[3:35], 16)


class _Recording(SpanHandle):
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
            sc.attempt_span_name(rec.name, number), _CLIENT, rec.trace_id,
            _new_span_id(), rec.span_id, rec.tracestate, attrs, time_ns(),
        )  # fmt: skip
        child.local_parent = True
        return _Recording(child, self._formats, True, self._sink)

    def end(self, status: int | None, error_type: str | None = None) -> None:
        rec = self._record
        if rec.end_ns:
            return  # ended already
        attrs = rec.attributes
        failed = False
        if status is not None and status > 0:
            attrs[sc.HTTP_STATUS] = status
            # semconv: 5xx is an error on both sides, 4xx only on the client side
            failed = status >= 500 or (status >= 400 and rec.kind is _CLIENT)
            if failed and error_type is None:
                error_type = str(status)
        if error_type is not None:
            attrs[sc.ERROR_TYPE] = error_type
            failed = True
        rec.failed = failed
        rec.end_ns = time_ns()
        self._sink(rec)


class Tracing:
    """Per-sidecar tracing: decide, start spans, export in the background."""

    def __init__(
        self,
        settings: TracingSettings,
        *,
        exporter: SpanExporter | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.enabled = settings.enabled
        self.sampler = Sampler(settings.sampler, settings.ratio)
        self._root_bound = self.sampler.bound  # roots with low 64 id bits under it: sampled
        self._parent_based = self.sampler.parent_based
        self._rng = rng or random.Random()
        self._getrandbits = self._rng.getrandbits
        self.formats = settings.propagators
        self._w3c_only = self.formats == _W3C_ONLY
        self._next_root = 0  # a root trace id `unsampled` drew and found sampled
        # new roots' ids: the OS's random bytes (a given rng, for tests: its own)
        self._roots = RootIds(os.urandom if rng is None else rng.randbytes, self._root_bound)
        self._pending_roots = self._roots.pending
        self.processor: DroppingBatchProcessor | None = None
        if not self.enabled:
            return
        if exporter is None:
            raise ValueError("tracing is enabled but no span exporter was given")
        resource = Resource.create(dict(settings.resource))
        # an exporter that writes records itself (otlp_export.py) gets them as they are;
        # any other gets SDK spans made from them on the export thread
        set_resource = getattr(exporter, "set_resource", None)
        convert = None
        if callable(set_resource):
            set_resource(resource.attributes)
        else:
            convert = ToReadableSpan(resource)
        self.processor = DroppingBatchProcessor.for_settings(settings, exporter, convert=convert)
        self._sink = self.processor.add

    # -- starting spans ---------------------------------------------------------------
    def unsampled(
        self, headers: Headers, counted: int = -1, traceparent: bytes | None = None
    ) -> bool:
        """The data path's first question, answered without making a span handle: True
        when the request is not sampled and its headers already carry that decision (a
        caller's unsampled W3C parent, left as it is; or a new unsampled root, whose
        `traceparent` is appended here). False: call `start_*_span` (a new root's trace
        id and decision carry over to it). `counted`/`traceparent`: what the HTTP/1.1
        parser saw (how many trace headers, the traceparent), which saves a scan; -1: the
        headers are scanned here."""
        w3c = traceparent
        if counted != 1 or w3c is None:  # else a lone traceparent (the mesh's own): no scan
            found = None if counted == 0 else tc.find_trace_headers(headers)
            if found is None:
                if self._w3c_only:  # a new root from the batch: formatted, or sampled
                    pending = self._pending_roots
                    root = pending.pop() if pending else self._roots.draw()
                    if isinstance(root, bytes):
                        headers.append((_TRACEPARENT, root))
                        return True
                    self._next_root = root
                return False  # (other propagators: the span path draws the root)
            w3c = found.get(_TRACEPARENT)
        return self._parent_based and w3c is not None and is_unsampled_traceparent(w3c)

    def start_server_span(
        self,
        headers: Headers,
        *,
        method: str,
        path: bytes | str,
        server_address: str,
        server_port: int | None = None,
        protocol: str = "1.1",
        peer_identity: str | None = None,
        route: str | None = None,
        scheme: str = "http",
        attributes: Mapping[str, Any] | None = None,
    ) -> SpanHandle:
        """The inbound span: parent from the request's headers (if any). `server_address`
        may be an authority (`host:port`) when `server_port` is not given."""
        if not self.enabled:
            return DISABLED
        return self._start(
            _SERVER, headers, method, path, server_address, server_port, protocol,
            peer_identity, route, scheme, attributes,
        )  # fmt: skip

    def start_client_span(
        self,
        headers: Headers,
        *,
        method: str,
        path: bytes | str,
        server_address: str,
        server_port: int | None = None,
        protocol: str = "1.1",
        peer_identity: str | None = None,
        route: str | None = None,
        scheme: str = "http",
        attributes: Mapping[str, Any] | None = None,
    ) -> SpanHandle:
        """The outbound span: parent from the headers the app forwarded (if any)."""
        if not self.enabled:
            return DISABLED
        return self._start(
            _CLIENT, headers, method, path, server_address, server_port, protocol,
            peer_identity, route, scheme, attributes,
        )  # fmt: skip

    def _start(
        self,
        kind: SpanKind,
        headers: Headers,
        method: str,
        path: bytes | str,
        server_address: str,
        server_port: int | None,
        protocol: str,
        peer_identity: str | None,
        route: str | None,
        scheme: str,
        attributes: Mapping[str, Any] | None,
    ) -> SpanHandle:
        found = tc.find_trace_headers(headers)
        if found is not None and self.sampler.parent_based:
            w3c = found.get(_TRACEPARENT)
            if w3c is not None and tc.is_unsampled_traceparent(w3c):
                return _UnsampledW3C(w3c)  # the caller decided "no"
        parent = tc.extract_found(found) if found is not None else None
        had = found is not None
        trace_id = 0
        if parent is not None and parent.has_ids:
            trace_id = parent.trace_id
        elif found is None:  # a new root: the id (and decision) `unsampled` drew, if any
            trace_id, self._next_root = self._next_root, 0
        while not trace_id:
            trace_id = self._getrandbits(128)
        if not self.sampler.decide(parent, trace_id):
            if parent is not None and parent.has_ids:
                return _Unsampled(trace_id)
            return _UnsampledRoot(trace_id, self._new_span_id(), self.formats, had)
        return self._recording(
            kind, parent, trace_id, had, method, path, server_address, server_port, protocol,
            peer_identity, route, scheme, attributes,
        )  # fmt: skip

    def _recording(
        self,
        kind: SpanKind,
        parent: tc.TraceContext | None,
        trace_id: int,
        had: bool,
        method: str,
        path: bytes | str,
        server_address: str,
        server_port: int | None,
        protocol: str,
        peer_identity: str | None,
        route: str | None,
        scheme: str,
        attributes: Mapping[str, Any] | None,
    ) -> SpanHandle:
        if isinstance(path, bytes):
            path = path.decode("latin-1")
        if server_port is None:  # an authority (host:port): split only for recorded spans
            host, sep, port = server_address.rpartition(":")
            if sep and port.isdigit() and "]" not in port:
                server_address, server_port = host, int(port)
        url_path, _, _query = path.partition("?")
        attrs: dict[str, Any] = {
            sc.HTTP_METHOD: method,
            sc.URL_PATH: url_path,
            sc.URL_SCHEME: scheme,
            sc.SERVER_ADDRESS: server_address,
            sc.NETWORK_PROTOCOL_VERSION: protocol,
        }
        if server_port is not None:
            attrs[sc.SERVER_PORT] = server_port
        if route:
            attrs[sc.HTTP_ROUTE] = route
        if peer_identity:
            attrs[PEER_IDENTITY] = peer_identity
        if attributes:
            attrs.update(attributes)
        tracestate = ""
        parent_span_id = 0
        if parent is not None and parent.has_ids:
            tracestate = parent.tracestate
            parent_span_id = parent.span_id
        name = f"{method} {route}" if route else method
        record = SpanRecord(
            name, kind, trace_id, self._new_span_id(), parent_span_id, tracestate, attrs,
            time_ns(),
        )  # fmt: skip
        formats = self.formats
        if parent is not None and parent.fmt not in formats:
            formats = (*formats, parent.fmt)  # answer in the caller's format too
        return _Recording(record, formats, had, self._sink)

    def _new_span_id(self) -> int:
        span_id = 0
        while not span_id:
            span_id = self._getrandbits(64)
        return span_id

    # -- lifecycle ---------------------------------------------------------------------
    @property
    def dropped(self) -> int:
        return self.processor.dropped if self.processor is not None else 0

    @property
    def exported(self) -> int:
        return self.processor.exported if self.processor is not None else 0

    def force_flush(self, timeout: float = 5.0) -> bool:
        if self.processor is None or not self.enabled:
            return True
        return self.processor.force_flush(int(timeout * 1000))

    def shutdown(self, timeout: float = 2.0) -> None:
        """Stop the export thread; spans still queued after `timeout` are dropped."""
        self.enabled = False  # the processor stays, for its counters
        if self.processor is not None:
            self.processor.shutdown_within(timeout)


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
