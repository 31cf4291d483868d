"""Telemetry on the data path: golden metrics, spans and access logs per request.

Two layers (docs/architecture.md, "The request path"), outermost on each side so they
see the responses the sidecar generates too (403, 502, 503 ...):

- `outbound_telemetry` (reporter `source`): a client span whose context is injected
  into the request forwarded upstream (parent: the trace headers the app sent, if
  any); `gossamer_requests_total` / `..._duration_seconds` with source = this service,
  destination = the cluster's service, `mutual_tls` when the endpoint was reached over
  mTLS, route = the route's name.
- `inbound_telemetry` (reporter `destination`): a server span whose context is injected
  into the request handed to the app, so the app's own calls (if it forwards the
  headers) continue the trace; source = the peer's service from its SPIFFE ID.

Each also turns data-path failures into the generated responses (what `errors_layer`
does when telemetry is off), so a request goes through one coroutine for both.
Durations run from the end of the request head to the response head (the moment the
sidecar starts answering); spans end at the same point. Tracing off (no OTLP endpoint)
costs one attribute test per request; not sampled (99% at the default 1%) costs the
decision (`Tracing.unsampled`: for the mesh's own lone traceparent, one regex). Request
series live in SidecarMetrics by their full label tuple; the layers find them by a
shorter key: per connection by method (inbound), by destination, mTLS, route and method
(outbound). A response's status and duration wait on the series' `pending` list (the
inlined `RequestSeries.record`) and are counted in bulk. Nothing else is allocated per
request unless a span is recorded or access logs are on. Live tap records (tap.py)
cost one attribute test per request while no tap is open.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from gossamer.errors import GossamerError
from gossamer.proxy.service import Layer, Request, Response, Service, error_response
from gossamer.proxy.telemetry import semconv as sc
from gossamer.proxy.telemetry.attempts import describe_request
from gossamer.proxy.telemetry.metrics import FOLD_AT, RequestSeries
from gossamer.proxy.telemetry.tracing import DISABLED, SpanHandle
from gossamer.proxy.telemetry.wiring import Telemetry
from gossamer.proxy.transport.h2 import grpc
from gossamer.proxy.transport.h2.conn import H2Body
from gossamer.proxy.transport.h2.server import grpc_error
from gossamer.proxy.transport.http1.conns import ConnectionInfo

MTLS = "mutual_tls"
NONE = "none"
_CACHED_METHODS = 8  # series kept per connection (methods are the only label that varies)
_CACHED_OUTBOUND = 4096  # outbound series kept by their short key


def peer_service(spiffe_id: str | None) -> str:
    """`spiffe://td/ns/N/sa/S` -> S (the source_service label)."""
    return spiffe_id.rsplit("/", 1)[-1] if spiffe_id else "unknown"


def outbound_telemetry(
    telemetry: Telemetry,
    local_service: str,
    own_identity: Callable[[], str | None] = lambda: None,
) -> Layer:
    metrics, tracing = telemetry.metrics, telemetry.tracing
    requests = metrics.requests
    access = telemetry.access_log
    tap = telemetry.tap
    loop: asyncio.AbstractEventLoop | None = None
    # series by (destination, mTLS, route, method), kept here to save building the
    # full label key per request; bounded, as the methods clients send are not
    known: dict[tuple[str, bool, str, str], RequestSeries] = {}

    def outbound_series(dst: str, tls: bool, route_name: str, method: str) -> RequestSeries:
        series = requests("source", local_service, dst, MTLS if tls else NONE, route_name, method)
        if len(known) < _CACHED_OUTBOUND:
            known[dst, tls, route_name, method] = series
        return series

    def layer(inner: Service) -> Service:
        async def call(req: Request) -> Response:
            nonlocal loop
            span: SpanHandle = DISABLED
            # not sampled (99% at the default 1%): no handle; access logs want the id
            if tracing.enabled and (
                access is not None
                or not tracing.unsampled(req.headers, req.trace_headers, req.traceparent)
            ):
                span = tracing.start_client_span(
                    req.headers, method=req.method, path=req.path, server_address=req.authority
                )
                span.inject(req.headers)
                if span.sampled:  # its tries get spans of their own (attempts.py)
                    req.span = span
            try:
                resp = await inner(req)
            except GossamerError as exc:
                resp = error_response(exc)
            if loop is None:
                loop = asyncio.get_running_loop()
            seconds = loop.time() - req.start
            cluster = req.cluster
            route = req.route
            if cluster is not None:
                tried = req.tried
                tls = cluster.config.tls and (not tried or tried[-1].endpoint.tls)
                dst = cluster.service_label
            else:
                tls, dst = False, "unknown"
            route_name = route.name if route is not None else ""
            method = req.method
            series = known.get((dst, tls, route_name, method))
            if series is None:
                series = outbound_series(dst, tls, route_name, method)
            if req.grpc:
                resp = record_grpc(series, resp, seconds)
            else:  # series.record, inlined (the hot path)
                pending = series.pending
                pending += (resp.status, seconds)
                if len(pending) >= FOLD_AT:
                    series.fold()
            if span.sampled:  # ending an unsampled span does nothing: skip the call
                describe_request(span, req)
                span.end(resp.status, resp.error.decode() if resp.error else None)
            if tap.active:  # no tap open: this check is all (telemetry/tap.py)
                tap.offer(
                    "outbound", own_identity() or "",
                    (cluster.config.identity or "") if cluster is not None and tls else "",
                    dst, method, req.authority, req.path, resp.status, seconds,
                    resp.content_length, req.headers,
                )  # fmt: skip
            if access is not None:
                access.log(
                    reporter="source", method=req.method, path=req.path,
                    authority=req.authority, status=resp.status, duration=seconds,
                    source_service=local_service, destination_service=dst,
                    upstream=_upstream(req), trace_id=span.trace_id,
                    error=resp.error.decode() if resp.error else None,
                )  # fmt: skip
            return resp

        return call

    return layer


def inbound_telemetry(
    telemetry: Telemetry, local_service: str, own_identity: Callable[[], str | None]
) -> Layer:
    metrics, tracing = telemetry.metrics, telemetry.tracing
    requests = metrics.requests
    access = telemetry.access_log
    tap = telemetry.tap
    loop: asyncio.AbstractEventLoop | None = None

    def inbound_series(conn: ConnectionInfo | None, method: str) -> RequestSeries:
        """The series of a request on `conn` (labels: the peer, the connection's
        security and app port), kept on the connection for its next requests."""
        if conn is None:
            return requests("destination", "unknown", local_service, NONE, "", method)
        app = conn.app_port
        route_name = app.cluster_name if app is not None else ""
        series = requests(
            "destination", peer_service(conn.peer_identity), local_service, conn.security,
            route_name, method,
        )  # fmt: skip
        if len(conn.request_series) < _CACHED_METHODS:
            conn.request_series[method] = series
        return series

    def layer(inner: Service) -> Service:
        async def call(req: Request) -> Response:
            nonlocal loop
            conn = req.conn
            span: SpanHandle = DISABLED
            if tracing.enabled and (
                access is not None
                or not tracing.unsampled(req.headers, req.trace_headers, req.traceparent)
            ):
                span = tracing.start_server_span(
                    req.headers, method=req.method, path=req.path,
                    server_address=req.authority, peer_identity=_peer(conn),
                )  # fmt: skip
                span.inject(req.headers)
            try:
                resp = await inner(req)
            except GossamerError as exc:
                resp = error_response(exc)
            if loop is None:
                loop = asyncio.get_running_loop()
            seconds = loop.time() - req.start
            method = req.method
            cached = conn.request_series if conn is not None else None
            series: RequestSeries | None = cached.get(method) if cached is not None else None
            if series is None:
                series = inbound_series(conn, method)
            if req.grpc:
                resp = record_grpc(series, resp, seconds)
            else:  # series.record, inlined (the hot path)
                pending = series.pending
                pending += (resp.status, seconds)
                if len(pending) >= FOLD_AT:
                    series.fold()
            if span.sampled:
                describe_server(span, req)
                span.end(resp.status, resp.error.decode() if resp.error else None)
            if tap.active:  # no tap open: this check is all (telemetry/tap.py)
                tap.offer(
                    "inbound", _peer(conn) or "", own_identity() or "", local_service,
                    method, req.authority, req.path, resp.status, seconds,
                    resp.content_length, req.headers,
                )  # fmt: skip
            if access is not None:
                access.log(
                    reporter="destination", method=req.method, path=req.path,
                    authority=req.authority, status=resp.status, duration=seconds,
                    source_service=series.labels[1], destination_service=local_service,
                    peer_identity=_peer(conn), trace_id=span.trace_id,
                    error=resp.error.decode() if resp.error else None,
                    extra={"identity": own_identity()},
                )  # fmt: skip
            return resp

        return call

    return layer


def record_grpc(series: RequestSeries, resp: Response, seconds: float) -> Response:
    """Count a gRPC call: response_code is the HTTP status, the classification follows
    grpc-status (from a trailers-only answer at once, else from the trailers when the
    body ends; a body that breaks is a failure). A generated error becomes the
    trailers-only answer the client will get. Returns the response to send."""
    if resp.error is not None and resp.status != 200:
        resp = grpc_error(resp)
    status = resp.status
    body = resp.body
    if not isinstance(body, H2Body):
        code = grpc.status_of(resp.headers)
        series.record(status, seconds, grpc.failed(status, code))
        series.grpc_status(code)
        return resp

    def ended(b: H2Body) -> None:
        code = None if b.broken else grpc.status_of(b.trailers)
        series.record(status, seconds, b.broken or grpc.failed(status, code))
        series.grpc_status(code)

    if body.done:
        ended(body)
    else:
        body.on_end = ended
    return resp


def describe_server(span: SpanHandle, req: Request) -> None:
    """A server span's name `{method} {route}`, the caller's address and user agent.
    The route: the one of this service's own virtual host (in its route table when it
    may call itself) that the authority and path match; else the inbound listener's
    route, everything to the app port (`/*`, as Envoy's inbound `default` route)."""
    snap = req.snapshot
    match = snap.router.match(req.authority, req.path) if snap is not None else None
    template = ""
    if match is not None and "*" not in match[0].domains:
        template = sc.route_template(match[1].prefix)
    elif req.conn is not None and req.conn.app_port is not None:
        template = sc.route_template("/")
    span.rename(sc.server_span_name(req.method, template))
    if template:
        span.set_attribute(sc.HTTP_ROUTE, template)
    conn = req.conn
    if conn is not None and conn.client:
        span.set_attribute(sc.CLIENT_ADDRESS, conn.client)
    agent = req.header(b"user-agent")
    if agent:
        span.set_attribute(sc.USER_AGENT, agent.decode("latin-1")[:256])


def _peer(conn: ConnectionInfo | None) -> str | None:
    return conn.peer_identity if conn is not None else None


def _upstream(req: Request) -> str | None:
    if not req.tried:
        return None
    ep = req.tried[-1].endpoint
    return f"{ep.address}:{ep.port}"
