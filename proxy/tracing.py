"""Spans for the sidecar: server span on inbound, client span on outbound (DESIGN.md §3).

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
  traces of their own. Tracing disabled: the handle never touches the headers.
- Sampled: an OpenTelemetry SDK span (own `TracerProvider` per sidecar, resource
  `service.name` etc.), with the stable HTTP semantic-convention attributes. A root
  span takes the trace id the decision was made on (`_PresetIdGenerator`).
- Finished spans go to `DroppingBatchProcessor` (tracing_export.py): a bounded queue
  drained by a thread that exports batches over OTLP/gRPC; when the queue is full
  (collector slow or down) spans are dropped and counted, never waited for.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace as trace_api
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags, TraceState
from opentelemetry.trace.status import Status, StatusCode

from gossamer.proxy import trace_context as tc
from gossamer.proxy.trace_context import Sampler
from gossamer.proxy.tracing_export import DroppingBatchProcessor, TracingSettings

Headers = list[tuple[bytes, bytes]]
__all__ = ["DISABLED", "Sampler", "SpanHandle", "Tracing"]
_SERVER = SpanKind.SERVER
_CLIENT = SpanKind.CLIENT
PEER_IDENTITY = "gossamer.peer.spiffe_id"
_W3C_ONLY = (tc.W3C,)
_TRACEPARENT = b"traceparent"
_MASK64 = (1 << 64) - 1


class _PresetIdGenerator(IdGenerator):
    """Random ids, except a root trace id set just before the SDK asks for it."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.next_trace_id = 0

    def generate_span_id(self) -> int:
        span_id = 0
        while not span_id:
            span_id = self.rng.getrandbits(64)
        return span_id

    def generate_trace_id(self) -> int:
        trace_id, self.next_trace_id = self.next_trace_id, 0
        while not trace_id:
            trace_id = self.rng.getrandbits(128)
        return trace_id

    def is_trace_id_random(self) -> bool:
        return True


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
            headers.append((_TRACEPARENT, b"00-%032x-%016x-00" % (self._trace_id, self._span_id)))
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
    __slots__ = ("_formats", "_had", "_kind", "_parent_id", "_span", "_tracestate")
    sampled = True

    def __init__(
        self,
        span: Any,
        kind: SpanKind,
        formats: tuple[str, ...],
        had: bool,
        tracestate: str,
        parent_id: int,
    ) -> None:
        self._span = span
        self._kind = kind
        self._formats = formats
        self._had = had
        self._tracestate = tracestate
        self._parent_id = parent_id

    @property
    def trace_id(self) -> int:
        return int(self._span.get_span_context().trace_id)

    @property
    def span(self) -> Any:
        return self._span

    def inject(self, headers: Headers) -> None:
        ctx = self._span.get_span_context()
        tc.inject(
            headers,
            ctx.trace_id,
            ctx.span_id,
            True,
            self._formats,
            tracestate=self._tracestate,
            parent_id=self._parent_id,
            had_trace_headers=self._had,
        )

    def set_attribute(self, key: str, value: Any) -> None:
        self._span.set_attribute(key, value)

    def set_peer(self, spiffe_id: str | None) -> None:
        if spiffe_id:
            self._span.set_attribute(PEER_IDENTITY, spiffe_id)

    def end(self, status: int | None, error_type: str | None = None) -> None:
        span = self._span
        failed = False
        if status is not None and status > 0:
            span.set_attribute("http.response.status_code", status)
            # semconv: 5xx is an error on both sides, 4xx only on the client side
            failed = status >= 500 or (status >= 400 and self._kind is _CLIENT)
            if failed and error_type is None:
                error_type = str(status)
        if error_type is not None:
            span.set_attribute("error.type", error_type)
            failed = True
        if failed:
            span.set_status(Status(StatusCode.ERROR))
        span.end()


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
        self._rng = rng or random.Random()
        self._getrandbits = self._rng.getrandbits
        self.formats = settings.propagators
        self._w3c_only = self.formats == _W3C_ONLY
        self._next_root = 0  # a root trace id `unsampled` drew and found sampled
        self.processor: DroppingBatchProcessor | None = None
        self._tracer: Any = None
        if not self.enabled:
            return
        self._ids = _PresetIdGenerator(self._rng)
        self.provider = TracerProvider(
            sampler=ALWAYS_ON,  # the decision is made in start_*; the SDK only records
            resource=Resource.create(dict(settings.resource)),
            id_generator=self._ids,
        )
        self.processor = DroppingBatchProcessor.for_settings(settings, exporter)
        self.provider.add_span_processor(self.processor)
        self._tracer = self.provider.get_tracer("gossamer.proxy")

    # -- starting spans ---------------------------------------------------------------
    def unsampled(self, headers: Headers) -> bool:
        """The data path's first question, answered without making a span handle: True
        when the request is not sampled and its headers already carry that decision (a
        caller's unsampled W3C parent, left as it is; or a new unsampled root, whose
        `traceparent` is appended here). False: call `start_*_span` (a new root's trace
        id and decision carry over to it)."""
        found = tc.find_trace_headers(headers)
        if found is None:
            trace_id = self._getrandbits(128)
            if trace_id and (trace_id & _MASK64) >= self._root_bound and self._w3c_only:
                span_id = self._getrandbits(64)
                if span_id:
                    headers.append((_TRACEPARENT, b"00-%032x-%016x-00" % (trace_id, span_id)))
                    return True
            self._next_root = trace_id
            return False
        if self.sampler.parent_based:
            w3c = found.get(_TRACEPARENT)
            return w3c is not None and tc.is_unsampled_traceparent(w3c)
        return False

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
        if found is None:  # a new trace: the common case on the outbound side
            trace_id, self._next_root = self._next_root, 0
            if not trace_id:
                trace_id = self._getrandbits(128)
            if trace_id and (trace_id & _MASK64) >= self._root_bound:
                span_id = self._getrandbits(64)
                if span_id:
                    return _UnsampledRoot(trace_id, span_id, self.formats, False)
        elif self.sampler.parent_based:
            w3c = found.get(b"traceparent")
            if w3c is not None and tc.is_unsampled_traceparent(w3c):
                return _UnsampledW3C(w3c)  # the common case: the caller decided "no"
        parent = tc.extract_found(found) if found is not None else None
        had = found is not None
        if parent is not None and parent.has_ids:
            trace_id = parent.trace_id
        elif found is not None:
            trace_id = 0
        while not trace_id:
            trace_id = self._getrandbits(128)
        if not self.sampler.decide(parent, trace_id):
            if parent is not None and parent.has_ids:
                return _Unsampled(trace_id)
            return _UnsampledRoot(trace_id, self._ids.generate_span_id(), self.formats, had)
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
            "http.request.method": method,
            "url.path": url_path,
            "url.scheme": scheme,
            "server.address": server_address,
            "network.protocol.version": protocol,
        }
        if server_port is not None:
            attrs["server.port"] = server_port
        if route:
            attrs["http.route"] = route
        if peer_identity:
            attrs[PEER_IDENTITY] = peer_identity
        if attributes:
            attrs.update(attributes)
        context = None
        tracestate = ""
        parent_span_id = 0
        if parent is not None and parent.has_ids:
            tracestate = parent.tracestate
            parent_span_id = parent.span_id
            remote = SpanContext(
                parent.trace_id,
                parent.span_id,
                is_remote=True,
                trace_flags=TraceFlags(TraceFlags.SAMPLED),
                trace_state=_trace_state(tracestate),
            )
            context = trace_api.set_span_in_context(NonRecordingSpan(remote))
        else:
            self._ids.next_trace_id = trace_id
        name = f"{method} {route}" if route else method
        span = self._tracer.start_span(name, context=context, kind=kind, attributes=attrs)
        formats = self.formats
        if parent is not None and parent.fmt not in formats:
            formats = (*formats, parent.fmt)  # answer in the caller's format too
        return _Recording(span, kind, formats, had, tracestate, parent_span_id)

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


def _trace_state(raw: str) -> TraceState:
    if not raw:
        return TraceState()
    try:
        return TraceState.from_header([raw])
    except ValueError:
        return TraceState()
