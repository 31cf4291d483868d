"""Traces end to end on real sidecars: four hops (loadgen -> web -> catalog -> inventory,
tests/helpers/observed_mesh.py) over mutual TLS, spans exported over OTLP/gRPC to a real
receiver (opentelemetry-proto's TraceService on grpc.aio).

Each calling sidecar starts a client span and injects it into the request to the next
sidecar, which starts a server span from it and hands the app its context; the apps pass
the trace headers on (echo_app `--upstream`). The receiver must get one trace per request
with correct parent links across the hops, the HTTP attributes and the peers' SPIFFE IDs
from the handshakes; a ratio sampler decided at the first hop keeps traces whole.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from gossamer.proxy.telemetry.otlp_export import OtlpGrpcExporter
from gossamer.proxy.telemetry.trace_export import TracingSettings
from gossamer.proxy.telemetry.tracing import Tracing
from tests.helpers import binomial
from tests.helpers.observed_mesh import ObservedMesh, observed_mesh, spiffe
from tests.helpers.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.helpers.procs import free_port

pytestmark = pytest.mark.e2e

HOPS = (("loadgen", "web"), ("web", "catalog"), ("catalog", "inventory"))


def sidecar_env(endpoint: str, ratio: str = "1") -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": ratio,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }


def of_trace(spans: list[ReceivedSpan], trace_id: str) -> list[ReceivedSpan]:
    return [s for s in spans if s.trace_id == trace_id]


def one(spans: list[ReceivedSpan], service: str, kind: str) -> ReceivedSpan:
    found = [s for s in spans if s.service == service and s.kind == kind]
    assert len(found) == 1, (service, kind, found)
    return found[0]


def check_chain(spans: list[ReceivedSpan], root_parent: str = "") -> None:
    """loadgen's request -> its try #1 -> web server -> web's request -> its try #1 ->
    catalog server -> catalog's request -> its try #1 -> inventory server: each sidecar's
    span the parent of the next, named as Jaeger shows them (README, "Traces as Jaeger
    shows them")."""
    assert len(spans) == 9, [(s.service, s.kind, s.name) for s in spans]
    assert len({s.trace_id for s in spans}) == 1
    parent = root_parent
    for src, dst in HOPS:
        (logical,) = [s for s in spans if s.service == src and s.parent_span_id == parent]
        (attempt,) = [s for s in spans if s.parent_span_id == logical.span_id]
        server = one(spans, dst, "server")
        assert (logical.kind, attempt.kind) == ("client", "client"), (src, dst)
        assert server.parent_span_id == attempt.span_id, (src, dst)
        assert logical.name == f"GET /* -> {dst}" and attempt.name == f"GET /* -> {dst} #1"
        assert server.name == "GET /*"
        parent = server.span_id
        # the identities each side saw in the mTLS handshake
        assert attempt.attributes["gossamer.peer.spiffe_id"] == spiffe(dst)
        assert server.attributes["gossamer.peer.spiffe_id"] == spiffe(src)
        assert attempt.attributes["server.address"] == dst
        assert attempt.attributes["network.peer.address"] == "127.0.0.1"
        assert "http.request.resend_count" not in attempt.attributes  # no resend
        assert logical.attributes["http.route"] == server.attributes["http.route"] == "/*"
        assert server.attributes["client.address"] == "127.0.0.1"
    for span in spans:
        a = span.attributes
        assert a["http.request.method"] == "GET"
        assert a["url.path"] == "/"
        assert a["network.protocol.version"] == "1.1"
        assert a["http.response.status_code"] == 200
        assert span.resource["service.instance.id"] == f"{span.service}-1"
    web_in = one(spans, "web", "server")
    (web_out,) = [s for s in spans if s.parent_span_id == web_in.span_id]
    assert web_in.end_ns >= web_out.end_ns >= one(spans, "catalog", "server").end_ns


def traced(om: ObservedMesh, headers: dict[str, str] | None = None) -> None:
    """One request into web through the loadgen sidecar (as the loadgen app)."""
    status, body = om.sidecars["loadgen"].get("web", "/", headers_extra=headers)
    assert status == 200 and body == b"web <- 200\n", (status, body)


def test_four_hops_make_one_trace(tmp_path):
    with OtlpReceiver() as receiver:
        env = sidecar_env(receiver.endpoint)
        with observed_mesh(tmp_path, sidecar_env=env, drive=False, fail_every=0) as om:
            # the set-up's request made a trace: wait for it, to tell ours apart
            before = {s.trace_id for s in receiver.wait_for(lambda s: len(s) >= 9)}

            # 1. no context: a new trace, rooted at the loadgen sidecar's client span
            traced(om)
            got = receiver.wait_for(lambda s: len([x for x in s if x.trace_id not in before]) >= 9)
            check_chain([s for s in got if s.trace_id not in before])

            # 2. an outside caller's B3 (multi-header) context is continued
            trace_id, parent = "463ac35c9f6413ad48485a3953bb6124", "a2fb4a1d1a96d312"
            traced(om, {"X-B3-TraceId": trace_id, "X-B3-SpanId": parent, "X-B3-Sampled": "1"})
            got = receiver.wait_for(lambda s: len(of_trace(s, trace_id)) >= 9)
            check_chain(of_trace(got, trace_id), root_parent=parent)

            # 3. W3C with the sampled flag off: nothing is recorded (parent-based); a
            # sampled request sent after it shows every sidecar's exporter has caught up
            off = "0af7651916cd43dd8448eb211c80319c"
            traced(om, {"traceparent": f"00-{off}-b7ad6b7169203331-00"})
            on = "0af7651916cd43dd8448eb211c80319d"
            traced(om, {"traceparent": f"00-{on}-b7ad6b7169203331-01"})
            got = receiver.wait_for(lambda s: len(of_trace(s, on)) >= 9)
            check_chain(of_trace(got, on), root_parent="b7ad6b7169203331")
            assert of_trace(got, off) == []


REQUESTS, RATIO = 800, 0.25


def test_ratio_sampling_keeps_traces_whole(tmp_path):
    """At 25%, the first hop decides and the others follow: every trace that arrives
    has all nine spans, and the share of traced requests is the ratio within 4.5 standard
    deviations of the binomial count (200 +- 55 of 800: [142, 259]); a ratio wrong by 2x
    (100 +- 40 or 400 +- 62) falls outside, so the test tells it apart."""
    low, high = binomial.bounds(REQUESTS, RATIO)
    assert binomial.detects_factor(REQUESTS, RATIO, 2.0)
    with OtlpReceiver() as receiver:
        env = sidecar_env(receiver.endpoint, str(RATIO))
        with observed_mesh(tmp_path, sidecar_env=env, drive=False, fail_every=0) as om:
            time.sleep(1)  # the set-up's request, if sampled, is exported by now
            before = {s.trace_id for s in receiver.spans()}
            with ThreadPoolExecutor(4) as pool:  # four apps' worth of callers at once
                list(pool.map(lambda _: traced(om), range(REQUESTS)))
            # a sampled marker sent last: once its nine spans are in, every sidecar
            # has exported what came before it
            marker = "5b8efff798038103d269b633813fc60c"
            traced(om, {"traceparent": f"00-{marker}-eee19b7ec3c1b174-01"})
            receiver.wait_for(lambda s: len(of_trace(s, marker)) >= 9)
            time.sleep(0.5)
            spans = receiver.spans()
    traces: dict[str, list[ReceivedSpan]] = {}
    for span in spans:
        if span.trace_id not in before and span.trace_id != marker:
            traces.setdefault(span.trace_id, []).append(span)
    for spans_of_one in traces.values():
        assert len(spans_of_one) == 9, [s.name for s in spans_of_one]
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
