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
  The handles themselves (no-op, unsampled, recording) are in span_handles.py.
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
from collections.abc import Mapping
from time import time_ns
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.trace import SpanKind

from gossamer.proxy.telemetry import semconv as sc
from gossamer.proxy.telemetry import trace_context as tc
from gossamer.proxy.telemetry.span_handles import (
    CLIENT_KIND,
    DISABLED,
    PEER_IDENTITY,
    SERVER_KIND,
    TRACEPARENT,
    W3C_ONLY,
    Headers,
    Recording,
    SpanHandle,
    Unsampled,
    UnsampledRoot,
    UnsampledW3C,
)
from gossamer.proxy.telemetry.span_record import SpanRecord, ToReadableSpan
from gossamer.proxy.telemetry.trace_context import Sampler, is_unsampled_traceparent
from gossamer.proxy.telemetry.trace_export import DroppingBatchProcessor, TracingSettings
from gossamer.proxy.telemetry.trace_roots import RootIds

__all__ = ["DISABLED", "Sampler", "SpanHandle", "Tracing"]


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
        self._w3c_only = self.formats == W3C_ONLY
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
                        headers.append((TRACEPARENT, root))
                        return True
                    self._next_root = root
                return False  # (other propagators: the span path draws the root)
            w3c = found.get(TRACEPARENT)
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
            SERVER_KIND, headers, method, path, server_address, server_port, protocol,
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
            CLIENT_KIND, headers, method, path, server_address, server_port, protocol,
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
            w3c = found.get(TRACEPARENT)
            if w3c is not None and tc.is_unsampled_traceparent(w3c):
                return UnsampledW3C(w3c)  # the caller decided "no"
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
                return Unsampled(trace_id)
            return UnsampledRoot(trace_id, self._new_span_id(), self.formats, had)
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
        return Recording(record, formats, had, self._sink)

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
