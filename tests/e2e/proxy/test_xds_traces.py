"""Spans of one request across two sidecars reach a real OTLP receiver as one trace:
the client span of the calling sidecar (and under it the span of its one attempt),
then the server span of the called one, each with the HTTP attributes and the peer's
SPIFFE ID, and the app behind receives the context to continue it. (Retries:
test_xds_trace_attempts.py.)"""

from __future__ import annotations

import json

import pytest

from tests.helpers.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.helpers.procs import processes
from tests.helpers.xds_mesh import XdsMesh, http_service, spiffe

pytestmark = pytest.mark.e2e

PARENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"


def test_one_trace_across_two_hops(tmp_path):
    with OtlpReceiver() as receiver, processes() as procs:
        mesh = XdsMesh(tmp_path, procs, [http_service("web"), http_service("catalog")])
        mesh.start_control()
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_TRACES_SAMPLER_ARG": "1",  # parent-based ratio: every new trace
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }
        catalog = mesh.sidecar("catalog", mesh.app("catalog-0"), env=env)
        web = mesh.sidecar("web", env=env)
        status, body = web.get("catalog", "/headers", headers_extra={
            "traceparent": f"00-{PARENT_TRACE}-{PARENT_SPAN}-01"})  # fmt: skip
        assert status == 200
        seen_by_app = json.loads(body)

        spans = receiver.wait_for(lambda s: len([x for x in s if x.trace_id == PARENT_TRACE]) >= 3)
        ours = [s for s in spans if s.trace_id == PARENT_TRACE]
        client = next(s for s in ours if s.name == "GET /* -> catalog")
        attempt = next(s for s in ours if s.name == "GET /* -> catalog #1")
        server = next(s for s in ours if s.kind == "server")
        assert server.name == "GET /*"
        assert (client.service, attempt.service, server.service) == ("web", "web", "catalog")
        assert client.parent_span_id == PARENT_SPAN
        assert attempt.parent_span_id == client.span_id and attempt.kind == "client"
        assert server.parent_span_id == attempt.span_id
        for span in (client, attempt, server):
            assert span.attributes["http.request.method"] == "GET"
            assert span.attributes["url.path"] == "/headers"
            assert span.attributes["server.address"] == "catalog"
            assert span.attributes["http.response.status_code"] == 200
        assert client.attributes["gossamer.peer.spiffe_id"] == spiffe("catalog")
        assert server.attributes["gossamer.peer.spiffe_id"] == spiffe("web")
        assert client.attributes["http.route"] == server.attributes["http.route"] == "/*"
        assert client.attributes["gossamer.route.name"].startswith("catalog.default:8080")
        # the app got the server span as its parent, to continue the trace
        assert seen_by_app["traceparent"] == f"00-{PARENT_TRACE}-{server.span_id}-01"

        # a request without context starts a new trace, still one per request
        assert web.get("catalog", "/")[0] == 200

        def fresh(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
            return [x for x in spans if x.trace_id != PARENT_TRACE]

        spans = fresh(receiver.wait_for(lambda s: len(fresh(s)) >= 3))
        assert len({s.trace_id for s in spans}) == 1
        assert sorted(s.kind for s in spans) == ["client", "client", "server"]
        assert web.metric("gossamer_trace_spans_exported_total") >= 2
        assert catalog.metric("gossamer_trace_spans_exported_total") >= 2
