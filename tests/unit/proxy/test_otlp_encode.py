"""Export requests written from span records equal what the OpenTelemetry SDK's OTLP
encoder makes of the same spans (both parsed with the protobuf classes)."""

from __future__ import annotations

import random

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import SpanKind

from gossamer.proxy.telemetry.otlp_encode import ExportRequestWriter, any_value, varint
from gossamer.proxy.telemetry.span_record import SpanRecord, ToReadableSpan

RESOURCE = Resource.create({"service.name": "web", "service.namespace": "default"})


def record(i: int, **attrs: object) -> SpanRecord:
    rng = random.Random(i)
    rec = SpanRecord(
        "GET catalog" if i % 2 else "GET",
        SpanKind.CLIENT if i % 2 else SpanKind.SERVER,
        rng.getrandbits(128) or 1,
        rng.getrandbits(64) or 1,
        rng.getrandbits(64) if i % 3 else 0,  # every third one a root
        "vendor=abc,other=1" if i % 4 == 0 else "",
        {"http.request.method": "GET", "url.path": "/items/ü", "server.port": 8080, **attrs},
        1_700_000_000_000_000_000 + i,
    )
    rec.end_ns = rec.start_ns + 1_234_567
    rec.failed = i % 5 == 0
    return rec


def both(records: list[SpanRecord]) -> tuple[ExportTraceServiceRequest, ExportTraceServiceRequest]:
    sdk = encode_spans([ToReadableSpan(RESOURCE)(r) for r in records]).SerializeToString()
    ours = ExportRequestWriter(RESOURCE.attributes).request(records)
    return (
        ExportTraceServiceRequest.FromString(sdk),
        ExportTraceServiceRequest.FromString(ours),
    )


def test_batch_equals_the_sdk_encoding():
    records = [
        record(
            i,
            **{"http.response.status_code": 200 + i, "error.type": "503" if i % 5 == 0 else ""},
        )
        for i in range(40)
    ]
    sdk, ours = both(records)
    assert ours == sdk
    spans = ours.resource_spans[0].scope_spans[0].spans
    assert len(spans) == 40
    assert ours.resource_spans[0].scope_spans[0].scope.name == "gossamer.proxy"
    root, child = spans[0], spans[1]
    assert root.parent_span_id == b"" and child.parent_span_id == records[1].parent_id.to_bytes(
        8, "big"
    )
    assert root.kind == Span.SPAN_KIND_SERVER and child.kind == Span.SPAN_KIND_CLIENT
    assert root.status.code == Status.STATUS_CODE_ERROR  # record 0 failed
    assert child.status.code == Status.STATUS_CODE_UNSET
    assert root.trace_state == "vendor=abc,other=1"
    assert child.end_time_unix_nano - child.start_time_unix_nano == 1_234_567


@pytest.mark.parametrize(
    "value",
    [
        "",
        "x" * 300,  # a length that needs a two-byte varint
        True,
        False,
        0,
        -1,
        -(2**63),
        2**63 - 1,
        1.5,
        -0.0,
        b"\x00\xff",
        ["a", "b"],
        [1, 2, 3],
        (True, False),
    ],
)
def test_attribute_values_equal_the_sdk_encoding(value):
    sdk, ours = both([record(1, value=value)])
    assert ours == sdk


def test_tracestate_is_normalised_and_a_bad_one_left_out():
    rec = record(1)
    rec.tracestate = "a=1 , b=2"
    sdk, ours = both([rec])
    assert ours == sdk
    rec.tracestate = "not a tracestate ==="
    sdk, ours = both([rec])
    assert ours == sdk
    assert ours.resource_spans[0].scope_spans[0].spans[0].trace_state == ""


def test_empty_batch_and_building_blocks():
    _sdk, ours = both([])
    assert len(ours.resource_spans[0].scope_spans[0].spans) == 0
    assert varint(0) == b"\x00" and varint(127) == b"\x7f" and varint(300) == b"\xac\x02"
    assert any_value(None) == b""
    assert any_value(object()).startswith(b"\x0a")  # anything else: its str


def test_repeated_attributes_encoded_once_stay_exact_per_value_type():
    """Span attributes with str or int values are kept encoded after their first use:
    the same key with 1, True, 1.0 and "1" must still give four different encodings,
    and a second batch (from the kept table) must equal the SDK's as the first did."""
    values: list[object] = [1, True, 1.0, "1", 1, True, "1"]
    records = [record(i, flag=v, **{"url.path": f"/items/{i}"}) for i, v in enumerate(values)]
    for _ in range(2):
        sdk, ours = both(records)
        assert ours == sdk
    kinds = [
        next(a.value.WhichOneof("value") for a in span.attributes if a.key == "flag")
        for span in ours.resource_spans[0].scope_spans[0].spans
    ]
    names = {int: "int_value", bool: "bool_value", float: "double_value", str: "string_value"}
    assert kinds == [names[type(v)] for v in values]


def test_the_kept_attribute_table_is_bounded_and_skips_paths():
    from gossamer.proxy.telemetry import otlp_encode

    before = len(otlp_encode._STR_ATTRS)
    records = [record(i, **{"url.path": f"/u/{i}", "peer": f"p{i}"}) for i in range(3000)]
    sdk, ours = both(records)
    assert ours == sdk  # beyond the bound, attributes are encoded each time, as before
    assert before <= len(otlp_encode._STR_ATTRS) <= otlp_encode._MAX_ATTRS
    assert not any(key == "url.path" for key, _ in otlp_encode._STR_ATTRS)
