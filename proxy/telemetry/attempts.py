"""Attempt spans: every try of a sampled outbound request is its own client span.

OpenTelemetry's HTTP conventions make each resend a span of its own, with
`http.request.resend_count`; here they are children of the logical request's client
span (telemetry/layers.py), so a request that succeeded on its second try reads, in
Jaeger:

    web   GET /* -> catalog          200, gossamer.attempts=2
    web     GET /* -> catalog #1     503 (error), network.peer.address=10.0.0.7
    web     GET /* -> catalog #2     200, http.request.resend_count=1,
                                     gossamer.retry.reason=503
    catalog   GET /*                 (server spans under each attempt)

`attempt_layer` sits between the retry layer and the endpoint service: per try it
opens the attempt span, injects its context into the request (the callee's server
span is its child), and ends it with the try's outcome and the endpoint it went to
(address, port, zone, node), the connection facts the endpoint service noted on it
(`note_connection`), and an event when the try got its endpoint ejected. The retry
layer notes resends' reasons, backoffs, budget exhaustion and circuit-breaker
rejections on the logical span (`note_resend`, `note`). Unsampled requests
(`request.span` None) pass through at the cost of one attribute test.
"""

from __future__ import annotations

from typing import Any

from gossamer.errors import GossamerError
from gossamer.proxy.service import Overflow, Request, Response, Service, error_response
from gossamer.proxy.telemetry import semconv as sc
from gossamer.proxy.telemetry.tracing import SpanHandle


def describe_request(span: SpanHandle, req: Request) -> None:
    """Name the logical client span `{method} {route} -> {destination}` and add the
    route and cluster attributes (once the route is known; again is harmless)."""
    route, cluster = req.route, req.cluster
    template = sc.route_template(route.prefix) if route is not None else ""
    destination = cluster.service_label if cluster is not None else ""
    span.rename(sc.client_span_name(req.method, template, destination))
    if route is not None:
        span.set_attribute(sc.HTTP_ROUTE, template)
        span.set_attribute(sc.ROUTE_NAME, route.name)
        snap = req.snapshot
        vh = snap.router.virtual_host(req.authority) if snap is not None else None
        if vh is not None:
            span.set_attribute(sc.VIRTUAL_HOST, vh.name)
    if cluster is not None:
        config = cluster.config
        span.set_attribute(sc.UPSTREAM_CLUSTER, config.name)
        span.set_attribute(sc.DESTINATION, destination)
        span.set_attribute(sc.LB_POLICY, str(getattr(config.lb_policy, "value", config.lb_policy)))
        span.set_peer(config.identity)


def endpoint_attributes(endpoint: Any) -> dict[str, Any]:
    """The chosen endpoint, as attempt span attributes."""
    attrs: dict[str, Any] = {
        sc.NETWORK_PEER_ADDRESS: endpoint.address,
        sc.NETWORK_PEER_PORT: endpoint.port,
    }
    if endpoint.zone:
        attrs[sc.ENDPOINT_ZONE] = endpoint.zone
    if endpoint.node:
        attrs[sc.ENDPOINT_NODE] = endpoint.node
    return attrs


def note_connection(req: Request, reused: bool, waited: float, conn: Any = None) -> None:
    """The endpoint service's word on the try's connection: reused or new, the seconds
    it took to get it (a wait for a pooled one, or TCP connect and TLS handshake), and
    for a new mTLS connection the handshake's own time."""
    attempt = req.attempt
    if attempt is not None:
        attempt.set_attribute(sc.CONN_REUSED, reused)
        attempt.set_attribute(sc.CONN_WAIT_MS, round(waited * 1000, 3))
        handshake = getattr(getattr(conn, "transport", None), "handshake_seconds", None)
        if not reused and isinstance(handshake, float) and handshake > 0:
            attempt.set_attribute(sc.TLS_HANDSHAKE_MS, round(handshake * 1000, 3))


def note_resend(req: Request, reason: str, backoff: float) -> None:
    """The retry layer resends the request for `reason` after `backoff` seconds."""
    span = req.span
    if span is not None:
        span.set_attribute(sc.RETRY_REASON, reason)
        span.add_event(
            sc.EVENT_BACKOFF,
            {sc.RETRY_REASON: reason, "gossamer.retry.backoff_ms": round(backoff * 1000, 3)},
        )


def note(req: Request, event: str, attributes: dict[str, Any] | None = None) -> None:
    """An event on the logical span (budget exhausted, breaker rejected ...)."""
    span = req.span
    if span is not None:
        span.add_event(event, attributes)


def attempt_layer(inner: Service) -> Service:
    def call(req: Request) -> Any:
        span = req.span
        if span is None:  # not sampled: nothing to do
            return inner(req)
        return traced(req, span)

    async def traced(req: Request, span: SpanHandle) -> Response:
        if req.attempt is None:
            describe_request(span, req)
        attempt = span.attempt()
        attempt.inject(req.headers)
        req.attempt = attempt
        tried = len(req.tried)
        try:
            resp = await inner(req)
        except GossamerError as exc:
            _ended(attempt, req, tried, exc)
            attempt.end(None, error_type(exc))
            raise
        _ended(attempt, req, tried, None)
        attempt.end(resp.status, resp.error.decode() if resp.error else None)
        return resp

    return call


def _ended(attempt: SpanHandle, req: Request, tried: int, exc: BaseException | None) -> None:
    cluster = req.cluster
    if isinstance(exc, Overflow):
        attempt.add_event(sc.EVENT_BREAKER_REJECTED, {"gossamer.limit": "max_requests"})
    if len(req.tried) <= tried:
        return  # no endpoint was chosen for this try
    host = req.tried[-1]
    for key, value in endpoint_attributes(host.endpoint).items():
        attempt.set_attribute(key, value)
    if cluster is not None:
        attempt.set_peer(cluster.config.identity)
        if host.ejected_until and host.ejected_until > cluster.clock():
            attempt.add_event(
                sc.EVENT_OUTLIER_EJECTED, {sc.NETWORK_PEER_ADDRESS: host.endpoint.address}
            )


def error_type(exc: BaseException) -> str:
    """The code a data-path failure is answered with (e.g. `connect-failure`)."""
    return (error_response(exc).error or b"error").decode()
