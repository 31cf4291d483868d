"""Span attribute names and span naming, in one place (docs/architecture.md, "Traces").

The standard names come from the `opentelemetry-semantic-conventions` package (stable
`opentelemetry.semconv.attributes` modules only; importing them costs a few
milliseconds at start-up and nothing per request: each is a module-level str). The
mesh's own attributes are under `gossamer.`.

Naming (OpenTelemetry HTTP conventions, `{method} {route}`):
- `http.route` is the matched route's template: a prefix route `/api/` reads
  `/api/*`, the catch-all `/` reads `/*`; never the request's path (no ids, no query).
- server span (a sidecar's inbound side): `GET /*`; `{method}` alone without a route.
- client span of the logical request (outbound side): `GET /* -> catalog`, the
  destination service named, so in Jaeger's tree a sidecar's outbound span is told
  apart from its inbound one without opening it.
- each attempt (try) of that request: a child client span `GET /* -> catalog #2`, the
  try's number after `#` (bounded by the route's attempts).
"""

from __future__ import annotations

from opentelemetry.semconv.attributes import (
    client_attributes,
    error_attributes,
    http_attributes,
    network_attributes,
    server_attributes,
    url_attributes,
    user_agent_attributes,
)

HTTP_ROUTE = http_attributes.HTTP_ROUTE
HTTP_METHOD = http_attributes.HTTP_REQUEST_METHOD
HTTP_STATUS = http_attributes.HTTP_RESPONSE_STATUS_CODE
HTTP_RESEND_COUNT = http_attributes.HTTP_REQUEST_RESEND_COUNT
ERROR_TYPE = error_attributes.ERROR_TYPE
URL_PATH = url_attributes.URL_PATH
URL_SCHEME = url_attributes.URL_SCHEME
SERVER_ADDRESS = server_attributes.SERVER_ADDRESS
SERVER_PORT = server_attributes.SERVER_PORT
CLIENT_ADDRESS = client_attributes.CLIENT_ADDRESS
CLIENT_PORT = client_attributes.CLIENT_PORT
NETWORK_PEER_ADDRESS = network_attributes.NETWORK_PEER_ADDRESS
NETWORK_PEER_PORT = network_attributes.NETWORK_PEER_PORT
NETWORK_PROTOCOL_VERSION = network_attributes.NETWORK_PROTOCOL_VERSION
USER_AGENT = user_agent_attributes.USER_AGENT_ORIGINAL

# the mesh's own
PEER_IDENTITY = "gossamer.peer.spiffe_id"
UPSTREAM_CLUSTER = "gossamer.upstream.cluster"
DESTINATION = "gossamer.destination.service"
VIRTUAL_HOST = "gossamer.virtual_host"
ROUTE_NAME = "gossamer.route.name"
LB_POLICY = "gossamer.lb_policy"
ENDPOINT_ZONE = "gossamer.endpoint.zone"
ENDPOINT_NODE = "gossamer.endpoint.node"
ATTEMPTS = "gossamer.attempts"
RETRY_REASON = "gossamer.retry.reason"
CONN_REUSED = "gossamer.connection.reused"
CONN_WAIT_MS = "gossamer.connection.acquire_ms"
TLS_HANDSHAKE_MS = "gossamer.tls.handshake_ms"

# span events
EVENT_BACKOFF = "gossamer.retry.backoff"
EVENT_BUDGET_EXHAUSTED = "gossamer.retry.budget_exhausted"
EVENT_BREAKER_REJECTED = "gossamer.circuit_breaker.rejected"
EVENT_OUTLIER_EJECTED = "gossamer.outlier.ejected"
EVENT_GIVE_UP = "gossamer.retry.exhausted"


def route_template(prefix: str | None) -> str:
    """A prefix route's template for `http.route` and span names ("" for none)."""
    if not prefix:
        return ""
    return prefix if prefix.endswith("*") else prefix + "*"


def server_span_name(method: str, route: str) -> str:
    """`GET /*`, or `GET` when no route is known."""
    return f"{method} {route}" if route else method


def client_span_name(method: str, route: str, destination: str) -> str:
    """`GET /* -> catalog` (the destination named when known)."""
    name = f"{method} {route}" if route else method
    return f"{name} -> {destination}" if destination and destination != "unknown" else name


def attempt_span_name(logical: str, attempt: int) -> str:
    """`GET /* -> catalog #2`: the logical request's name and the try's number."""
    return f"{logical} #{attempt}"
