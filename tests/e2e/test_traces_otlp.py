"""Traces end to end: three hops over real HTTP, spans exported over OTLP/gRPC to a real
receiver (opentelemetry-proto's TraceService on grpc.aio).

Each simulated sidecar starts a server span from the incoming headers, the app passes
the context on, the outbound side starts a client span and injects it into the real
request to the next service, exactly as the proxy will. The receiver must get one trace
per request with correct parent links across the hops and the HTTP attributes.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from gossamer.proxy.telemetry.otlp_export import OtlpGrpcExporter
from gossamer.proxy.telemetry.trace_export import TracingSettings
from gossamer.proxy.telemetry.tracing import Tracing
from tests.helpers import binomial
from tests.helpers.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.helpers.procs import free_port
from tests.helpers.sim_mesh import SimMesh, spiffe

pytestmark = pytest.mark.e2e


def settings(endpoint: str, ratio: str = "1") -> TracingSettings:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": ratio,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    return TracingSettings.from_env(env, service="sim")


def of_trace(spans: list[ReceivedSpan], trace_id: str) -> list[ReceivedSpan]:
    return [s for s in spans if s.trace_id == trace_id]


def one(spans: list[ReceivedSpan], service: str, kind: str) -> ReceivedSpan:
    found = [s for s in spans if s.service == service and s.kind == kind]
    assert len(found) == 1, (service, kind, found)
    return found[0]


def check_chain(spans: list[ReceivedSpan], root_parent: str = "") -> None:
    """web server -> web client -> catalog server -> catalog client -> inventory server."""
    assert len(spans) == 5, [(s.service, s.kind) for s in spans]
    assert len({s.trace_id for s in spans}) == 1
    web_in = one(spans, "web", "server")
    web_out = one(spans, "web", "client")
    cat_in = one(spans, "catalog", "server")
    cat_out = one(spans, "catalog", "client")
    inv_in = one(spans, "inventory", "server")
    assert web_in.parent_span_id == root_parent
    assert web_out.parent_span_id == web_in.span_id
    assert cat_in.parent_span_id == web_out.span_id
    assert cat_out.parent_span_id == cat_in.span_id
    assert inv_in.parent_span_id == cat_out.span_id
    for span in spans:
        a = span.attributes
        assert a["http.request.method"] == "GET"
        assert a["url.path"] == "/"
        assert a["network.protocol.version"] == "1.1"
        assert a["http.response.status_code"] == 200
        assert isinstance(a["server.port"], int)
        assert span.resource["service.instance.id"] == f"{span.service}-1"
    assert web_out.attributes["server.address"] == "catalog"
    assert web_out.attributes["gossamer.peer.spiffe_id"] == spiffe("catalog")
    assert cat_in.attributes["gossamer.peer.spiffe_id"] == spiffe("web")
    assert inv_in.attributes["gossamer.peer.spiffe_id"] == spiffe("catalog")
    assert "gossamer.peer.spiffe_id" not in web_in.attributes  # caller outside the mesh
    assert web_out.attributes["http.route"] == "catalog-default"
    assert web_in.end_ns >= web_out.end_ns >= cat_in.end_ns  # nested in time


async def test_three_hops_make_one_trace():
    with OtlpReceiver() as receiver:
        async with SimMesh(tracing=settings(receiver.endpoint)) as mesh:
            # 1. no context: a new trace, rooted at web's server span
            assert await mesh.request() == 200
            spans = await asyncio.to_thread(receiver.wait_for, lambda s: len(s) >= 5)
            check_chain(spans)

            # 2. an outside caller's B3 (multi-header) context is continued
            trace_id, parent = "463ac35c9f6413ad48485a3953bb6124", "a2fb4a1d1a96d312"
            b3 = {"X-B3-TraceId": trace_id, "X-B3-SpanId": parent, "X-B3-Sampled": "1"}
            assert await mesh.request(b3) == 200
            got = await asyncio.to_thread(
                receiver.wait_for, lambda s: len(of_trace(s, trace_id)) >= 5
            )
            check_chain(of_trace(got, trace_id), root_parent=parent)

            # 3. W3C with the sampled flag off: nothing is recorded (parent-based); a
            # sampled request sent after it shows the exporter has caught up
            off = "0af7651916cd43dd8448eb211c80319c"
            await mesh.request({"traceparent": f"00-{off}-b7ad6b7169203331-00"})
            on = "0af7651916cd43dd8448eb211c80319d"
            await mesh.request({"traceparent": f"00-{on}-b7ad6b7169203331-01"})
            got = await asyncio.to_thread(receiver.wait_for, lambda s: len(of_trace(s, on)) >= 5)
            check_chain(of_trace(got, on), root_parent="b7ad6b7169203331")
            assert of_trace(got, off) == []


async def test_ratio_sampling_keeps_traces_whole():
    """At 25%, the first hop decides and the others follow: every trace that arrives
    has all five spans, and the share of requests traced is the configured ratio."""
    requests, ratio = 1000, 0.25
    # Binomial(1000, 0.25): mean 250, sigma 13.7; accepted 250 +- 4.5 sigma = [188, 312].
    # A ratio wrong by 2x (12.5%: 125 +- 47, or 50%: 500 +- 71) falls outside.
    low, high = binomial.bounds(requests, ratio)
    assert binomial.detects_factor(requests, ratio, 2.0)
    with OtlpReceiver() as receiver:
        async with SimMesh(tracing=settings(receiver.endpoint, str(ratio))) as mesh:
            await mesh.drive(requests, concurrency=4)
            for svc in mesh.services:
                assert await asyncio.to_thread(svc.telemetry.tracing.force_flush, 5.0)
        spans = receiver.spans()
    traces: dict[str, list[ReceivedSpan]] = {}
    for span in spans:
        traces.setdefault(span.trace_id, []).append(span)
    assert low <= len(traces) <= high, (len(traces), low, high)
    for trace in traces.values():
        check_chain(trace)


def test_a_dead_collector_drops_spans_instead_of_blocking():
    port = free_port()  # nothing listens here
    cfg = TracingSettings.from_env(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
            "OTEL_TRACES_SAMPLER": "always_on",
            "OTEL_BSP_MAX_QUEUE_SIZE": "64",
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "16",
            "OTEL_BSP_SCHEDULE_DELAY": "50",
        },
        service="lonely",
    )
    loop = asyncio.new_event_loop()  # the sidecar's event loop, free to run
    threading.Thread(target=loop.run_forever, daemon=True).start()
    exporter = OtlpGrpcExporter(cfg.endpoint or "", insecure=True, loop=loop)
    tracing = Tracing(cfg, exporter=exporter)
    worst = 0.0
    start = time.perf_counter()
    for _ in range(3000):
        t0 = time.perf_counter()
        span = tracing.start_server_span(
            [], method="GET", path="/", server_address="lonely", server_port=80
        )
        span.end(200)
        worst = max(worst, time.perf_counter() - t0)
    total = time.perf_counter() - start
    assert tracing.dropped > 2000  # the queue (64) filled and stayed full
    assert tracing.exported == 0
    assert total < 3.0 and worst < 0.5, (total, worst)  # never waited for the collector
    t0 = time.perf_counter()
    tracing.shutdown(timeout=1.0)
    assert time.perf_counter() - t0 < 3.0
    loop.call_soon_threadsafe(loop.stop)
