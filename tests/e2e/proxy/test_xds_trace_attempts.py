"""A request recovered on its second try, traced through real sidecars to a real OTLP
receiver: the logical client span `GET /* -> catalog` (not an error), one attempt span
per try (`#1` with the app's 503 and error status, `#2` with
`http.request.resend_count` 1 and the reason), each attempt with the endpoint it went
to, and under each attempt the callee's server span `GET /*` with the caller's address
and user agent. (Unit tests: tests/unit/proxy/test_trace_attempts.py.)"""

from __future__ import annotations

import pytest

from tests.helpers.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.helpers.procs import http_get, processes
from tests.helpers.xds_mesh import XdsMesh, http_service, spiffe

pytestmark = pytest.mark.e2e

TRACE = "5bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "10f067aa0ba902b7"


def test_a_request_recovered_on_its_second_try(tmp_path):
    retries = {"attempts": 2, "on": ["connect-failure", "reset", 503]}
    with OtlpReceiver() as receiver, processes() as procs:
        mesh = XdsMesh(
            tmp_path, procs, [http_service("web"), http_service("catalog", retries=retries)]
        )
        mesh.start_control()
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_TRACES_SAMPLER_ARG": "1",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "GOSSAMER_SERVICE_VERSION": "2.0.1",
        }
        app = mesh.app("catalog-0")
        catalog = mesh.sidecar("catalog", app, env=env)
        web = mesh.sidecar("web", env=env)
        assert web.get("catalog", "/")[0] == 200  # the route is in place
        assert http_get(f"http://127.0.0.1:{app}/control/fail-next/503")[0] == 200
        status, _ = web.get("catalog", "/headers", headers_extra={
            "traceparent": f"00-{TRACE}-{PARENT}-01", "user-agent": "shop-web/1.0"})  # fmt: skip
        assert status == 200

        def ours(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
            return [s for s in spans if s.trace_id == TRACE]

        spans = ours(receiver.wait_for(lambda s: len(ours(s)) >= 5))
        by_name: dict[str, list[ReceivedSpan]] = {}
        for s in spans:
            by_name.setdefault(s.name, []).append(s)
        assert sorted(by_name) == [
            "GET /*",
            "GET /* -> catalog",
            "GET /* -> catalog #1",
            "GET /* -> catalog #2",
        ], sorted(by_name)
        (logical,) = by_name["GET /* -> catalog"]
        (first,) = by_name["GET /* -> catalog #1"]
        (second,) = by_name["GET /* -> catalog #2"]
        servers = by_name["GET /*"]
        assert len(servers) == 2
        # the logical request: recovered, so not an error
        assert logical.kind == "client" and logical.parent_span_id == PARENT
        assert logical.status_code == 0
        assert logical.attributes["http.response.status_code"] == 200
        assert logical.attributes["gossamer.attempts"] == 2
        assert logical.attributes["http.route"] == "/*"
        assert logical.attributes["gossamer.upstream.cluster"].endswith("catalog.default")
        assert logical.attributes["gossamer.virtual_host"].startswith("catalog.default:8080")
        assert logical.resource["service.version"] == "2.0.1"
        assert logical.resource["service.name"] == "web"
        # each try: a client span under it, with the endpoint it went to
        for attempt in (first, second):
            assert attempt.kind == "client" and attempt.parent_span_id == logical.span_id
            assert attempt.attributes["network.peer.address"] == "127.0.0.1"
            assert attempt.attributes["network.peer.port"] == catalog.inbound
            assert attempt.attributes["gossamer.peer.spiffe_id"] == spiffe("catalog")
            assert attempt.attributes["server.address"] == "catalog"
            assert isinstance(attempt.attributes["gossamer.connection.reused"], bool)
            assert attempt.attributes["gossamer.connection.acquire_ms"] >= 0
        # each try reuses the connection the warm-up request opened, or opens one (and
        # then says how long its TLS handshake took)
        for attempt in (first, second):
            if not attempt.attributes["gossamer.connection.reused"]:
                assert attempt.attributes["gossamer.tls.handshake_ms"] > 0
        assert first.status_code == 2 and first.attributes["http.response.status_code"] == 503
        assert "http.request.resend_count" not in first.attributes
        assert second.status_code == 0
        assert second.attributes["http.request.resend_count"] == 1
        assert second.attributes["gossamer.retry.reason"] == "503"
        # under each try, the callee's server span: the 503 under the first
        under = {s.parent_span_id: s for s in servers}
        assert set(under) == {first.span_id, second.span_id}
        assert under[first.span_id].attributes["http.response.status_code"] == 503
        assert under[first.span_id].status_code == 2
        assert under[second.span_id].attributes["http.response.status_code"] == 200
        for server in servers:
            assert server.service == "catalog" and server.kind == "server"
            assert server.attributes["http.route"] == "/*"
            assert server.attributes["client.address"] == "127.0.0.1"
            assert server.attributes["user_agent.original"] == "shop-web/1.0"
            assert server.attributes["gossamer.peer.spiffe_id"] == spiffe("web")
        # Prometheus: the route label is the route's configured name, never the path
        route_name = logical.attributes["gossamer.route.name"]
        assert web.metric("gossamer_route_requests_total", route=route_name) >= 2
        assert web.metric("gossamer_route_requests_total", route="/headers") == 0
