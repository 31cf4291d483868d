"""Span handles, sampling decisions and trace settings (in-memory exporter)."""

from __future__ import annotations

import random
import threading

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from gossamer.errors import ConfigError
from gossamer.proxy.telemetry import trace_context as tc
from gossamer.proxy.telemetry.trace_export import TracingSettings
from gossamer.proxy.telemetry.trace_roots import BATCH
from gossamer.proxy.telemetry.tracing import DISABLED, Sampler, Tracing
from tests.helpers import binomial

TP_ON = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TP_OFF = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"


def make(ratio: float = 1.0, sampler: str = "parentbased_traceidratio", **kw):
    exporter = InMemorySpanExporter()
    settings = TracingSettings(
        enabled=True,
        sampler=sampler,
        ratio=ratio,
        resource=(("service.name", "web"),),
        **kw,
    )
    return Tracing(settings, exporter=exporter, rng=random.Random(7)), exporter


def finished(tracing: Tracing, exporter: InMemorySpanExporter):
    assert tracing.force_flush()
    return exporter.get_finished_spans()


def server(tracing: Tracing, headers, **kw):
    args = {"method": "GET", "path": b"/items?page=2", "server_address": "web", "server_port": 8080}
    return tracing.start_server_span(headers, **{**args, **kw})


def test_disabled_tracing_touches_nothing():
    tracing = Tracing(TracingSettings(enabled=False))
    headers = [(b"traceparent", TP_ON)]
    span = server(tracing, headers)
    assert span is DISABLED and not span.sampled
    span.inject(headers)
    span.end(500)
    assert headers == [(b"traceparent", TP_ON)]


def test_server_span_attributes_and_parent():
    tracing, exporter = make()
    headers = [(b"Traceparent", TP_ON), (b"tracestate", b"vendor=1")]
    span = server(
        tracing, headers, peer_identity="spiffe://td/ns/default/sa/catalog", route="items"
    )
    assert span.sampled
    forwarded = list(headers)
    span.inject(forwarded)
    span.end(404)
    (s,) = finished(tracing, exporter)
    assert s.kind == SpanKind.SERVER and s.name == "GET items"
    assert s.context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    assert s.parent is not None and s.parent.span_id == 0xB7AD6B7169203331 and s.parent.is_remote
    assert dict(s.attributes) == {
        "http.request.method": "GET",
        "url.path": "/items",  # no query string
        "url.scheme": "http",
        "server.address": "web",
        "server.port": 8080,
        "network.protocol.version": "1.1",
        "http.route": "items",
        "gossamer.peer.spiffe_id": "spiffe://td/ns/default/sa/catalog",
        "http.response.status_code": 404,
    }
    assert s.status.status_code == StatusCode.UNSET  # 4xx is not a server error
    assert s.resource.attributes["service.name"] == "web"
    ctx = tc.extract(forwarded)
    assert ctx is not None and ctx.span_id == s.context.span_id and ctx.sampled
    assert ctx.tracestate == "vendor=1"


def test_client_span_errors():
    tracing, exporter = make()
    for status, error_type in ((404, None), (None, "connect-failure"), (503, None)):
        span = tracing.start_client_span(
            [], method="POST", path="/x", server_address="catalog", server_port=80
        )
        span.end(status, error_type)
    spans = finished(tracing, exporter)
    assert [s.kind for s in spans] == [SpanKind.CLIENT] * 3
    assert [s.attributes.get("error.type") for s in spans] == ["404", "connect-failure", "503"]
    assert all(s.status.status_code == StatusCode.ERROR for s in spans)
    assert "http.response.status_code" not in spans[1].attributes


def test_unsampled_parent_is_left_alone():
    tracing, exporter = make(ratio=1.0)
    headers = [(b"traceparent", TP_OFF)]
    span = server(tracing, headers)
    assert not span.sampled and span.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    span.inject(headers)
    span.end(200)
    assert headers == [(b"traceparent", TP_OFF)]
    assert finished(tracing, exporter) == ()


def test_unsampled_root_propagates_the_decision():
    tracing, exporter = make(ratio=0.0)
    span = server(tracing, [(b"host", b"web")])
    assert not span.sampled
    out: list[tuple[bytes, bytes]] = []
    span.inject(out)
    ctx = tc.extract(out)
    assert ctx is not None and ctx.sampled is False and ctx.trace_id == span.trace_id
    span.end(200)
    assert finished(tracing, exporter) == ()
    # b3 "deny" with no ids also starts a new unsampled trace, written as W3C
    deny = [(b"b3", b"0")]
    handle = server(tracing, deny)
    handle.inject(deny)
    assert [n for n, _ in deny] == [b"traceparent"]


@pytest.mark.parametrize(("ratio", "roots"), [(0.5, 1000), (0.1, 3000)])
def test_root_span_takes_the_trace_id_it_was_sampled_on(ratio, roots):
    tracing, exporter = make(ratio=ratio)
    decided = []
    for _ in range(roots):
        span = server(tracing, [])
        decided.append((span.sampled, span.trace_id))
        span.end(200)
    spans = finished(tracing, exporter)
    sampled_ids = [t for s, t in decided if s]
    assert [s.context.trace_id for s in spans] == sampled_ids
    # the share sampled is the ratio: Binomial(roots, ratio) within 4.5 sigma (0.5:
    # 500 +- 71; 0.1: 300 +- 74), bounds that a ratio wrong by 2x falls outside
    low, high = binomial.bounds(roots, ratio)
    assert binomial.detects_factor(roots, ratio, 2.0)
    assert low <= len(sampled_ids) <= high, (len(sampled_ids), low, high)
    # the rule is OpenTelemetry's: low 64 bits under ratio * 2**64
    assert all((t & ((1 << 64) - 1)) < int(ratio * (1 << 64)) for t in sampled_ids)
    assert all(s.parent is None for s in spans)


def test_b3_caller_is_answered_in_b3_too():
    tracing, _ = make()
    headers = [(b"b3", b"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1")]
    span = server(tracing, headers)
    span.inject(headers)
    found = tc.find_trace_headers(headers)
    assert found is not None and set(found) == {b"traceparent", b"b3"}
    b3 = tc.parse_b3_single(found[b"b3"])
    assert b3 is not None and b3.parent_id == 0xE457B5A2E4D86BD1 and b3.sampled
    span.end(200)


def test_sampler_rules():
    parent_on = tc.TraceContext(1, 1, True)
    parent_off = tc.TraceContext(1, 1, False)
    deferred = tc.TraceContext(1, 1, None)
    low, high = 5, (1 << 64) - 5
    pb = Sampler("parentbased_traceidratio", 0.5)
    assert pb.decide(parent_on, high) and not pb.decide(parent_off, low)
    assert pb.decide(deferred, low) and not pb.decide(deferred, high)
    plain = Sampler("traceidratio", 0.5)
    assert plain.decide(parent_off, low) and not plain.decide(parent_on, high)
    assert Sampler("always_on", 0).decide(None, high)
    assert not Sampler("always_off", 1).decide(None, 0)
    assert Sampler("parentbased_always_off", 0).decide(parent_on, high)
    assert Sampler("parentbased_traceidratio", 1.0).decide(None, (1 << 128) - 1)
    assert not Sampler("parentbased_traceidratio", 0.0).decide(None, 0)


def test_settings_from_env():
    s = TracingSettings.from_env({}, service="web")
    assert not s.enabled and s.sampler == "parentbased_traceidratio" and s.ratio == 0.01
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4317",
        "OTEL_TRACES_SAMPLER": "traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.25",
        "OTEL_PROPAGATORS": "tracecontext,baggage,b3multi",
        "OTEL_SERVICE_NAME": "web-edge",
        "OTEL_BSP_SCHEDULE_DELAY": "250",
    }
    s = TracingSettings.from_env(env, service="web", namespace="shop", instance="web-1")
    assert s.enabled and s.insecure and s.endpoint == "http://jaeger:4317"
    assert (s.sampler, s.ratio, s.schedule_delay) == ("traceidratio", 0.25, 0.25)
    assert s.propagators == ("tracecontext", "b3multi")
    assert dict(s.resource)["service.name"] == "web-edge"
    assert dict(s.resource)["service.namespace"] == "shop"
    assert dict(s.resource)["service.instance.id"] == "web-1"
    off = {**env, "OTEL_SDK_DISABLED": "true"}
    assert not TracingSettings.from_env(off, service="web").enabled
    none = {**env, "OTEL_TRACES_EXPORTER": "none"}
    assert not TracingSettings.from_env(none, service="web").enabled
    tls = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://collector:4317"}
    assert not TracingSettings.from_env(tls, service="web").insecure


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER"),
        ({"OTEL_TRACES_SAMPLER_ARG": "lots"}, "OTEL_TRACES_SAMPLER_ARG"),
        ({"OTEL_TRACES_SAMPLER_ARG": "1.5"}, "OTEL_TRACES_SAMPLER_ARG"),
        ({"OTEL_PROPAGATORS": "jaeger"}, "OTEL_PROPAGATORS"),
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
        ({"OTEL_BSP_MAX_QUEUE_SIZE": "0"}, "OTEL_BSP_MAX_QUEUE_SIZE"),
    ],
)
def test_bad_settings_name_the_variable(env, field):
    with pytest.raises(ConfigError) as err:
        TracingSettings.from_env(env, service="web")
    assert err.value.field == field and field in err.value.message


class StuckExporter(InMemorySpanExporter):
    """Blocks in export until released: a collector that does not answer."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def export(self, spans):
        self.entered.set()
        self.release.wait(10)
        return super().export(spans)


def test_full_queue_drops_and_counts():
    exporter = StuckExporter()
    settings = TracingSettings(
        enabled=True, ratio=1.0, max_queue_size=3, max_export_batch_size=3, schedule_delay=60
    )
    tracing = Tracing(settings, exporter=exporter)
    for _ in range(3):  # a full batch wakes the export thread, which then hangs
        server(tracing, []).end(200)
    assert exporter.entered.wait(5)
    for _ in range(10):  # the queue holds 3 more; the rest are dropped at once
        server(tracing, []).end(200)
    assert tracing.dropped == 7
    exporter.release.set()
    assert tracing.force_flush()
    assert len(exporter.get_finished_spans()) == 6 and tracing.exported == 6
    tracing.shutdown(1.0)
    assert server(tracing, []) is DISABLED


def test_malformed_unsampled_parent_starts_a_new_trace():
    tracing, exporter = make(ratio=1.0)
    headers = [(b"traceparent", b"00-00000000000000000000000000000000-b7ad6b7169203331-00")]
    span = server(tracing, headers)
    assert span.sampled  # the bad header is ignored: a root, sampled at 100%
    span.inject(headers)
    ctx = tc.extract(headers)
    assert ctx is not None and ctx.trace_id == span.trace_id and ctx.sampled
    span.end(200)
    (s,) = finished(tracing, exporter)
    assert s.parent is None


def test_unsampled_fast_path_appends_a_not_sampled_root():
    tracing, exporter = make(ratio=0.0)
    headers = [(b"Host", b"catalog")]
    assert tracing.unsampled(headers)
    name, value = headers[-1]
    assert name == b"traceparent" and tc.is_unsampled_traceparent(value)
    ctx = tc.extract(headers)
    assert ctx is not None and ctx.trace_id and ctx.span_id and ctx.sampled is False
    assert finished(tracing, exporter) == ()


def test_unsampled_fast_path_leaves_a_callers_decision_alone():
    tracing, _ = make(ratio=1.0)
    headers = [(b"traceparent", TP_OFF), (b"tracestate", b"a=1")]
    assert tracing.unsampled(headers)
    assert headers == [(b"traceparent", TP_OFF), (b"tracestate", b"a=1")]
    # a sampled parent, or one in another format, takes the full path
    assert not tracing.unsampled([(b"traceparent", TP_ON)])
    assert not tracing.unsampled([(b"b3", b"0")])


def test_a_sampled_root_keeps_the_trace_id_the_fast_path_drew():
    tracing, exporter = make(ratio=1.0)
    batch = random.Random(7).randbytes(24 * BATCH)  # roots are drawn BATCH at a time
    drawn = int.from_bytes(batch[-24:-8], "big")  # ... and taken from the batch's end
    headers: list[tuple[bytes, bytes]] = []
    assert not tracing.unsampled(headers) and headers == []
    span = tracing.start_client_span(headers, method="GET", path=b"/", server_address="catalog")
    assert span.sampled and span.trace_id == drawn
    span.end(200)
    assert [s.context.trace_id for s in finished(tracing, exporter)] == [drawn]


@pytest.mark.parametrize("ratio", [0.25, 0.5])
def test_fast_path_and_full_path_together_sample_at_the_configured_ratio(ratio):
    """The decision is drawn once: a root the fast path found sampled is not drawn again
    by start_client_span (which would sample ratio**2 of the requests)."""
    tracing, _ = make(ratio=ratio)
    sampled = 0
    n = 4000
    for _ in range(n):
        headers: list[tuple[bytes, bytes]] = []
        if tracing.unsampled(headers):
            continue
        span = tracing.start_client_span(headers, method="GET", path=b"/", server_address="catalog")
        sampled += span.sampled
        span.end(200)
    assert abs(sampled / n - ratio) < 0.04, sampled / n


def test_unsampled_fast_path_writes_b3_through_the_full_path():
    tracing, _ = make(ratio=0.0, propagators=("b3",))
    headers: list[tuple[bytes, bytes]] = []
    assert not tracing.unsampled(headers) and headers == []
    span = tracing.start_client_span(headers, method="GET", path=b"/", server_address="catalog")
    span.inject(headers)
    assert not span.sampled and [n for n, _ in headers] == [b"b3"]
    assert headers[0][1].endswith(b"-0")


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [(b"accept", b"*/*")],
        [(b"traceparent", TP_OFF)],
        [(b"Traceparent", TP_ON)],
        [(b"traceparent", b"00-not-valid-00")],
        [(b"traceparent", TP_OFF), (b"tracestate", b"a=1")],
        [(b"b3", b"0")],
    ],
)
@pytest.mark.parametrize("sampler", ["parentbased_traceidratio", "traceidratio"])
def test_the_parsers_count_gives_the_answer_of_a_scan(headers, sampler):
    """unsampled(headers, count, traceparent) (what the HTTP/1.1 parser saw) answers as
    unsampled(headers) does after scanning, and appends the same kind of header."""
    from gossamer.proxy.transport.http1.wire import parse_head

    head = parse_head(headers)
    hinted, _ = make(ratio=0.0, sampler=sampler)
    scanned, _ = make(ratio=0.0, sampler=sampler)
    with_hint, plain = list(head.headers), list(head.headers)
    assert hinted.unsampled(with_hint, head.trace_headers, head.traceparent) == scanned.unsampled(
        plain
    )
    assert [n for n, _ in with_hint] == [n for n, _ in plain]
