"""Span records made on the request path become SDK spans on the export thread."""

from __future__ import annotations

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from gossamer.proxy.telemetry.span_record import SpanRecord, ToReadableSpan, trace_state
from gossamer.proxy.telemetry.trace_export import DroppingBatchProcessor

RESOURCE = Resource.create({"service.name": "web"})


def record(parent_id: int = 0, tracestate: str = "", failed: bool = False) -> SpanRecord:
    rec = SpanRecord("GET", SpanKind.CLIENT, 0xABC, 0x123, parent_id, tracestate, {"a": 1}, 10)
    rec.end_ns, rec.failed = 25, failed
    return rec


def test_a_record_becomes_a_readable_span_with_a_remote_parent():
    span = ToReadableSpan(RESOURCE)(record(parent_id=0x77, tracestate="v=1", failed=True))
    assert span.name == "GET" and span.kind is SpanKind.CLIENT
    assert (span.context.trace_id, span.context.span_id) == (0xABC, 0x123)
    assert span.context.trace_flags.sampled and not span.context.is_remote
    assert span.parent is not None and span.parent.span_id == 0x77 and span.parent.is_remote
    assert span.context.trace_state.to_header() == "v=1"
    assert dict(span.attributes or {}) == {"a": 1}
    assert (span.start_time, span.end_time) == (10, 25)
    assert span.status.status_code is StatusCode.ERROR
    assert span.resource.attributes["service.name"] == "web"
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name == "gossamer.proxy"


def test_a_root_has_no_parent_and_a_bad_tracestate_is_dropped():
    span = ToReadableSpan(RESOURCE)(record(tracestate="not a tracestate ==="))
    assert span.parent is None
    assert span.status.status_code is StatusCode.UNSET
    assert len(trace_state("")) == 0 and len(span.context.trace_state) == 0


def test_the_processor_converts_on_the_export_thread_and_survives_a_bad_item():
    exporter = InMemorySpanExporter()
    convert = ToReadableSpan(RESOURCE)
    processor = DroppingBatchProcessor(exporter, schedule_delay=60, convert=convert)
    try:
        processor.add("not a span")  # conversion fails: counted, the thread goes on
        assert processor.force_flush(5000)
        processor.add(record())
        assert processor.force_flush(5000)
        assert [s.context.span_id for s in exporter.get_finished_spans()] == [0x123]
        assert (processor.failed, processor.exported) == (1, 1)
    finally:
        processor.shutdown_within(1)
