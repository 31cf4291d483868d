"""Span names, semantic-convention attributes and attempt spans (in-memory exporter;
the real retry layer over a fake endpoint service). e2e: tests/e2e/proxy/
test_xds_trace_attempts.py; Jaeger: tests/docker/test_demo.py."""

from __future__ import annotations

import asyncio
import random
from types import SimpleNamespace
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from gossamer.proxy.config import Cluster, Endpoint, RetryPolicy, Route, WeightedCluster
from gossamer.proxy.routing.layers import RetryLayer
from gossamer.proxy.service import Request, Response, compose
from gossamer.proxy.telemetry import semconv as sc
from gossamer.proxy.telemetry.attempts import attempt_layer, endpoint_attributes, note_connection
from gossamer.proxy.telemetry.layers import outbound_telemetry
from gossamer.proxy.telemetry.otlp_encode import ExportRequestWriter
from gossamer.proxy.telemetry.span_record import SpanRecord
from gossamer.proxy.telemetry.trace_export import TracingSettings
from gossamer.proxy.telemetry.tracing import Tracing
from gossamer.proxy.telemetry.wiring import Telemetry
from gossamer.proxy.upstream.balancer import Host

CATALOG_ID = "spiffe://gossamer.local/ns/default/sa/catalog"


def test_route_templates_and_names():
    assert sc.route_template("/") == "/*"
    assert sc.route_template("/api/") == "/api/*"
    assert sc.route_template("/api/*") == "/api/*"
    assert sc.route_template("") == "" and sc.route_template(None) == ""
    assert sc.server_span_name("GET", "/*") == "GET /*"
    assert sc.server_span_name("GET", "") == "GET"
    assert sc.client_span_name("POST", "/api/*", "catalog") == "POST /api/* -> catalog"
    assert sc.client_span_name("GET", "", "unknown") == "GET"
    assert sc.attempt_span_name("GET /* -> catalog", 2) == "GET /* -> catalog #2"


def test_names_come_from_the_semantic_conventions_package():
    from opentelemetry.semconv.attributes import http_attributes, network_attributes

    assert sc.HTTP_ROUTE == http_attributes.HTTP_ROUTE == "http.route"
    assert sc.HTTP_RESEND_COUNT == "http.request.resend_count"
    assert sc.NETWORK_PEER_ADDRESS == network_attributes.NETWORK_PEER_ADDRESS
    assert sc.CLIENT_ADDRESS == "client.address"
    assert sc.USER_AGENT == "user_agent.original"


def test_endpoint_attributes():
    ep = Endpoint("10.0.0.7", 15006, zone="zone-a", node="n1")
    assert endpoint_attributes(ep) == {
        "network.peer.address": "10.0.0.7",
        "network.peer.port": 15006,
        "gossamer.endpoint.zone": "zone-a",
        "gossamer.endpoint.node": "n1",
    }
    assert set(endpoint_attributes(Endpoint("10.0.0.8", 1))) == {
        "network.peer.address",
        "network.peer.port",
    }


class _Breaker:
    def try_acquire_retry(self) -> bool:
        return True

    def release_retry(self) -> None:
        pass


def _cluster() -> Any:
    config = Cluster("outbound|8080||catalog.default", "catalog", 8080, identity=CATALOG_ID)
    return SimpleNamespace(
        config=config, service_label="catalog", breaker=_Breaker(), clock=lambda: 0.0
    )


def _setup(
    statuses: list[int], eject_first: bool = False, **policy: Any
) -> tuple[Any, InMemorySpanExporter, Tracing]:
    """outbound telemetry -> routing (fake) -> retry -> attempts -> a fake endpoint that
    answers `statuses` in turn, from two endpoints by turns."""
    exporter = InMemorySpanExporter()
    settings = TracingSettings(enabled=True, sampler="always_on", ratio=1.0)
    telemetry = Telemetry(settings, span_exporter=exporter, rng=random.Random(3))
    hosts = [Host(Endpoint("10.0.0.7", 15006, zone="zone-a")), Host(Endpoint("10.0.0.8", 15006))]
    retry_policy = RetryPolicy(
        attempts=3, retry_status_codes=frozenset({503}), backoff_base=0.001, backoff_max=0.002,
        **policy,
    )  # fmt: skip
    route = Route("catalog.default:8080/default", (WeightedCluster("c"),), "/", retry=retry_policy)
    seen: list[bytes] = []

    async def endpoint(req: Request) -> Response:
        host = hosts[len(req.tried) % 2]
        req.tried.append(host)
        if eject_first and host is hosts[0]:  # outlier detection ejects it (clock: 0.0)
            host.ejected_until = 10.0
        note_connection(req, len(req.tried) > 1, 0.002)
        seen.append(next(v for k, v in req.headers if k == b"traceparent"))
        return Response(statuses.pop(0), [], b"")

    retry = RetryLayer(telemetry.metrics, rng=random.Random(1), clock=lambda: 0.0)
    chain = compose(endpoint, retry, attempt_layer)

    def routing(req: Request) -> Any:
        req.route, req.cluster = route, _cluster()
        return chain(req)

    service = compose(routing, outbound_telemetry(telemetry, "web"))
    service.seen = seen  # type: ignore[attr-defined]
    return service, exporter, telemetry.tracing


def _request(path: bytes = b"/items/42?secret=1") -> Request:
    return Request("GET", path, "catalog:8080", [(b"user-agent", b"curl/8")])


def test_a_request_recovered_on_its_second_try():
    service, exporter, tracing = _setup([503, 200])
    resp = asyncio.run(service(_request()))
    assert resp.status == 200
    assert tracing.force_flush()
    spans: dict[str, Any] = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {
        "GET /* -> catalog",
        "GET /* -> catalog #1",
        "GET /* -> catalog #2",
    }
    logical = spans["GET /* -> catalog"]
    first, second = spans["GET /* -> catalog #1"], spans["GET /* -> catalog #2"]
    # the logical request recovered; the failed try keeps its error
    assert logical.status.status_code is StatusCode.UNSET
    assert logical.attributes["http.response.status_code"] == 200
    assert logical.attributes["gossamer.attempts"] == 2
    assert first.status.status_code is StatusCode.ERROR
    assert first.attributes["http.response.status_code"] == 503
    assert second.status.status_code is StatusCode.UNSET
    # tries are client spans, children of the logical span (same sidecar)
    for attempt in (first, second):
        assert attempt.kind is SpanKind.CLIENT
        assert attempt.parent is not None and not attempt.parent.is_remote
        assert attempt.parent.span_id == logical.context.span_id
        assert attempt.context.trace_id == logical.context.trace_id
        assert attempt.attributes["http.route"] == "/*"
        assert attempt.attributes["url.path"] == "/items/42"  # no query string
        assert attempt.attributes["server.address"] == "catalog"
        assert attempt.attributes["server.port"] == 8080
        assert attempt.attributes["gossamer.peer.spiffe_id"] == CATALOG_ID
    assert "http.request.resend_count" not in first.attributes
    assert second.attributes["http.request.resend_count"] == 1
    assert second.attributes["gossamer.retry.reason"] == "503"
    assert first.attributes["network.peer.address"] == "10.0.0.7"
    assert second.attributes["network.peer.address"] == "10.0.0.8"
    assert first.attributes["gossamer.endpoint.zone"] == "zone-a"
    assert "gossamer.endpoint.zone" not in second.attributes
    assert second.attributes["network.peer.port"] == 15006
    assert first.attributes["gossamer.connection.reused"] is False
    assert second.attributes["gossamer.connection.reused"] is True
    assert second.attributes["gossamer.connection.acquire_ms"] == 2.0
    # the logical span: route, mesh attributes and the resend's backoff as an event
    assert logical.attributes["http.route"] == "/*"
    assert logical.attributes["gossamer.route.name"] == "catalog.default:8080/default"
    assert logical.attributes["gossamer.upstream.cluster"] == "outbound|8080||catalog.default"
    assert logical.attributes["gossamer.lb_policy"] == "round_robin"
    assert [e.name for e in logical.events] == ["gossamer.retry.backoff"]
    assert logical.events[0].attributes["gossamer.retry.reason"] == "503"
    # each try went out with its own span's context
    seen = service.seen
    assert len(seen) == 2
    assert seen[0].decode().split("-")[2] == f"{first.context.span_id:016x}"
    assert seen[1].decode().split("-")[2] == f"{second.context.span_id:016x}"
    tracing.shutdown()


def test_a_request_that_failed_every_try_is_an_error():
    service, exporter, tracing = _setup([503, 503, 503])
    assert asyncio.run(service(_request(b"/"))).status == 503
    assert tracing.force_flush()
    spans: Any = exporter.get_finished_spans()
    assert sorted(s.name for s in spans) == [
        "GET /* -> catalog",
        "GET /* -> catalog #1",
        "GET /* -> catalog #2",
        "GET /* -> catalog #3",
    ]
    assert all(s.status.status_code is StatusCode.ERROR for s in spans)
    third = next(s for s in spans if s.name.endswith("#3"))
    assert third.attributes["http.request.resend_count"] == 2
    tracing.shutdown()


def test_unsampled_requests_get_no_attempt_spans():
    exporter = InMemorySpanExporter()
    settings = TracingSettings(enabled=True, sampler="always_off", ratio=0.0)
    telemetry = Telemetry(settings, span_exporter=exporter, rng=random.Random(3))
    calls = []

    async def endpoint(req: Request) -> Response:
        calls.append((req.span, req.attempt))
        return Response(200, [], b"")

    service = compose(endpoint, outbound_telemetry(telemetry, "web"), attempt_layer)

    async def run() -> Response:
        return await service(_request())

    assert asyncio.run(run()).status == 200
    assert calls == [(None, None)]
    assert telemetry.tracing.force_flush() and exporter.get_finished_spans() == ()
    telemetry.tracing.shutdown()


@pytest.mark.parametrize("local", [False, True])
def test_events_and_local_parents_encode_as_the_sdk_does(local):
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.resources import Resource

    from gossamer.proxy.telemetry.span_record import ToReadableSpan

    rec = SpanRecord("GET /* -> catalog #2", SpanKind.CLIENT, 7, 8, 9, "", {"a": 1}, 1000)
    rec.local_parent = local
    rec.events = [
        (1500, "gossamer.retry.backoff", {"gossamer.retry.reason": "503"}),
        (1600, "x", {}),
    ]
    rec.end_ns = 2000
    resource = Resource.create({"service.name": "web"})
    sdk = encode_spans([ToReadableSpan(resource)(rec)]).SerializeToString()
    ours = ExportRequestWriter(resource.attributes).request([rec])
    assert ExportTraceServiceRequest.FromString(ours) == ExportTraceServiceRequest.FromString(sdk)


def test_resource_has_version_and_node():
    settings = TracingSettings.from_env(
        {"GOSSAMER_SERVICE_VERSION": "1.4.2"}, service="web", instance="web-1", node="n1"
    )
    resource = dict(settings.resource)
    assert resource["service.version"] == "1.4.2"
    assert resource["service.instance.id"] == "web-1"
    assert resource["gossamer.node"] == "n1"
    assert resource["service.namespace"] == "default"
    assert "service.version" not in dict(TracingSettings.from_env({}, service="web").resource)


def test_connection_facts_on_the_attempt_span():
    recorded: dict[str, Any] = {}
    attempt = SimpleNamespace(set_attribute=recorded.__setitem__)
    req = _request()
    req.attempt = attempt
    new_conn = SimpleNamespace(transport=SimpleNamespace(handshake_seconds=0.0042))
    note_connection(req, False, 0.0051, new_conn)
    assert recorded == {
        "gossamer.connection.reused": False,
        "gossamer.connection.acquire_ms": 5.1,
        "gossamer.tls.handshake_ms": 4.2,
    }
    recorded.clear()
    note_connection(req, True, 0.0, new_conn)  # a reused one: no handshake now
    assert recorded == {"gossamer.connection.reused": True, "gossamer.connection.acquire_ms": 0.0}
    req.attempt = None
    note_connection(req, True, 0.0)  # not sampled: nothing


def test_server_span_route_name_caller_and_agent():
    from gossamer.proxy.config import AppPort, RouteTable, VirtualHost
    from gossamer.proxy.routing.router import Router
    from gossamer.proxy.telemetry.layers import describe_server
    from gossamer.proxy.transport.http1.conns import ConnectionInfo

    to = (WeightedCluster("c"),)
    own = VirtualHost("catalog", ("catalog:8080",), (Route("api", to, "/api/"), Route("d", to)))
    anyhost = VirtualHost("allow_any", ("*",), (Route("pass", to, "/"),))

    def described(hosts: tuple[VirtualHost, ...], authority: str, app: bool) -> Any:
        recorded: dict[str, Any] = {}
        span = SimpleNamespace(
            rename=lambda n: recorded.__setitem__("name", n), set_attribute=recorded.__setitem__
        )
        req = Request("GET", b"/api/items/42?x=1", authority, [(b"user-agent", b"curl/8")])
        req.snapshot = SimpleNamespace(router=Router(RouteTable(virtual_hosts=hosts)))
        req.conn = ConnectionInfo("inbound", "10.0.0.5", app_port=AppPort(8080) if app else None)
        describe_server(span, req)  # type: ignore[arg-type]
        return recorded

    got = described((own, anyhost), "catalog:8080", True)
    assert got == {
        "name": "GET /api/*",
        "http.route": "/api/*",
        "client.address": "10.0.0.5",
        "user_agent.original": "curl/8",
    }
    # its own virtual host is not in its table (it may not call itself): the inbound
    # route, everything to the app port; never the catch-all's passthrough route
    assert described((anyhost,), "catalog:8080", True)["name"] == "GET /*"
    assert described((), "catalog:8080", False)["name"] == "GET"


def test_an_exhausted_retry_budget_is_an_event_on_the_request():
    service, exporter, tracing = _setup([503], budget_percent=0.0, min_retries_per_second=0.0)
    assert asyncio.run(service(_request())).status == 503
    assert tracing.force_flush()
    spans: dict[str, Any] = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"GET /* -> catalog", "GET /* -> catalog #1"}
    logical = spans["GET /* -> catalog"]
    assert [e.name for e in logical.events] == ["gossamer.retry.budget_exhausted"]
    assert logical.status.status_code is StatusCode.ERROR
    tracing.shutdown()


def test_a_try_over_the_breakers_max_requests_says_so():
    from gossamer.proxy.service import Overflow

    exporter = InMemorySpanExporter()
    settings = TracingSettings(enabled=True, sampler="always_on", ratio=1.0)
    telemetry = Telemetry(settings, span_exporter=exporter, rng=random.Random(3))
    route = Route("r", (WeightedCluster("c"),), "/api/")

    async def endpoint(req: Request) -> Response:
        raise Overflow("max_requests (1) reached")

    def routing(req: Request) -> Any:
        req.route, req.cluster = route, _cluster()
        return attempt_layer(endpoint)(req)

    service = compose(routing, outbound_telemetry(telemetry, "web"))

    async def run() -> Response:
        return await service(_request(b"/api/items/42"))

    assert asyncio.run(run()).status == 503
    assert telemetry.tracing.force_flush()
    spans: dict[str, Any] = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"GET /api/* -> catalog", "GET /api/* -> catalog #1"}
    attempt = spans["GET /api/* -> catalog #1"]
    assert [e.name for e in attempt.events] == ["gossamer.circuit_breaker.rejected"]
    assert attempt.attributes["error.type"] == "overflow"
    assert "network.peer.address" not in attempt.attributes  # no endpoint was chosen
    telemetry.tracing.shutdown()


def test_an_endpoint_ejected_after_a_try_is_an_event_on_that_try():
    service, exporter, tracing = _setup([503, 200], eject_first=True)
    assert asyncio.run(service(_request())).status == 200
    assert tracing.force_flush()
    spans: dict[str, Any] = {s.name: s for s in exporter.get_finished_spans()}
    first, second = spans["GET /* -> catalog #1"], spans["GET /* -> catalog #2"]
    assert [e.name for e in first.events] == ["gossamer.outlier.ejected"]
    assert first.events[0].attributes["network.peer.address"] == "10.0.0.7"
    assert second.events == ()
    tracing.shutdown()
