"""Requests, responses, services and layers: the shape of the sidecar's data path.

`Service = Callable[[Request], Awaitable[Response]]`; a `Layer` wraps a service into
another (retry, timeout, metrics, authz...). Layers read their typed settings from the
request (`request.route`, `request.cluster`, `request.snapshot`: frozen configuration
captured when the request started), never from globals.

Failures inside the data path are exceptions (`UpstreamConnectError`, `UpstreamReset`,
`UpstreamTimeout`, `NoHealthyUpstream`, ...); `error_response` turns them into the
responses the sidecar generates, each with an `x-gossamer-error` header naming the
cause.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from gossamer.errors import (
    AuthorizationDenied,
    GossamerError,
    NotFound,
    RemoteProtocolError,
    UpstreamConnectError,
    UpstreamError,
    UpstreamTimeout,
)
from gossamer.proxy.transport.http1.body import BodyStream, RequestBody

Headers = list[tuple[bytes, bytes]]
INF = float("inf")


class UpstreamReset(UpstreamError):
    """The upstream connection broke before the response head arrived."""


class NoHealthyUpstream(UpstreamError):
    """The cluster has no healthy endpoint."""


class IdentityMismatch(UpstreamConnectError):
    """The peer's certificate names another SPIFFE ID than the cluster's service."""


class PerTryTimeout(UpstreamTimeout):
    """One try took longer than the route's per-try timeout (a retry may follow)."""


class Overflow(UpstreamError):
    """A circuit-breaker limit of the cluster is reached (answered at once, not queued)."""


class NoConfig(UpstreamError):
    """The sidecar has no configuration yet."""


class AppNotReady(UpstreamError):
    """Inbound: the local app does not accept connections (not started yet, or gone)."""


class NoRoute(NotFound):
    """No virtual host or route matches the request."""


class NoCluster(UpstreamError):
    """The route names a cluster the configuration does not have (yet)."""


# exception class -> (status, x-gossamer-error); the first match in MRO order wins
ERRORS: dict[type[BaseException], tuple[int, bytes]] = {
    NoRoute: (404, b"no-route"),
    NoHealthyUpstream: (503, b"no-healthy-upstream"),
    Overflow: (503, b"overflow"),
    NoCluster: (503, b"no-cluster"),
    NoConfig: (503, b"no-config"),
    AppNotReady: (503, b"app-not-ready"),
    IdentityMismatch: (502, b"identity-mismatch"),
    UpstreamConnectError: (502, b"connect-failure"),
    UpstreamReset: (502, b"upstream-reset"),
    UpstreamTimeout: (504, b"timeout"),
    AuthorizationDenied: (403, b"denied"),
    RemoteProtocolError: (502, b"upstream-protocol-error"),
    UpstreamError: (502, b"upstream-error"),
    NotFound: (404, b"not-found"),
}

REASONS: dict[int, bytes] = {s.value: s.phrase.encode() for s in HTTPStatus}


class Request:
    """One HTTP request as the data path sees it (end-to-end headers only)."""

    __slots__ = (
        "attempt",
        "authority",
        "body",
        "cluster",
        "conn",
        "deadline",
        "expect_continue",
        "forwarded",
        "grpc",
        "headers",
        "http10",
        "keep_alive",
        "method",
        "on_informational",
        "path",
        "proxy_form",
        "request_id",
        "route",
        "snapshot",
        "span",
        "start",
        "trace_headers",
        "traceparent",
        "tried",
        "try_deadline",
        "upgrade",
    )

    def __init__(
        self,
        method: str,
        path: bytes,
        authority: str,
        headers: Headers,
        body: RequestBody | None = None,
        *,
        conn: Any = None,
        keep_alive: bool = True,
        http10: bool = False,
        expect_continue: bool = False,
        upgrade: bytes | None = None,
        start: float = 0.0,
    ) -> None:
        self.method = method
        self.path = path  # origin-form target (or authority-form for CONNECT)
        self.authority = authority  # lower-cased host[:port]
        self.headers = headers
        self.body = body
        self.conn = conn  # the downstream ConnectionInfo
        self.keep_alive = keep_alive
        self.http10 = http10
        self.expect_continue = expect_continue
        self.upgrade = upgrade  # the Upgrade header when the client asked to switch
        self.start = start
        self.proxy_form = False  # absolute-form target: the client used us as an HTTP proxy
        self.request_id = False  # the client sent an x-request-id
        self.forwarded = False  # the client sent x-forwarded-for/-client-cert
        # what the parser saw of trace context: how many trace headers (-1: not counted,
        # the tracing layer scans) and the traceparent value
        self.trace_headers = -1
        self.traceparent: bytes | None = None
        self.grpc = 0  # 1: a gRPC call (HTTP/2); 2: one with a grpc-timeout (its deadline)
        self.on_informational: Callable[[int, bytes, Headers], None] | None = None
        self.snapshot: Any = None
        self.route: Any = None
        self.cluster: Any = None
        self.tried: list[Any] = []
        # a sampled request's client span (outbound; None when not sampled) and its
        # current try's span (telemetry/attempts.py)
        self.span: Any = None
        self.attempt: Any = None
        # absolute loop times: the route's timeout and the current try's (inf: none);
        # the upstream connection enforces them with one timer per exchange
        self.deadline = INF
        self.try_deadline = INF

    def header(self, name: bytes) -> bytes | None:
        """The first value of a header (name in lower case)."""
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None


class Tunnel:
    """A raw byte stream that replaces HTTP after a 101 or a CONNECT (see tcp.splice)."""

    __slots__ = ("close", "eof", "pending", "transport")

    def __init__(
        self, transport: Any, pending: bytes = b"", close: Callable[[], None] | None = None
    ) -> None:
        self.transport = transport
        self.pending = pending  # bytes the upstream sent after its response head
        self.close = close  # drops the tunnel when the response is not a switch
        self.eof = False  # the upstream already finished sending


class Response:
    """A response; `body` is None, bytes, or a stream still arriving."""

    __slots__ = ("body", "content_length", "error", "headers", "reason", "status", "tunnel")

    def __init__(
        self,
        status: int,
        headers: Headers,
        body: BodyStream | bytes | None = None,
        *,
        reason: bytes | None = None,
        content_length: int | None = None,
        tunnel: Tunnel | None = None,
    ) -> None:
        self.status = status
        self.reason = reason if reason is not None else REASONS.get(status, b"Unknown")
        self.headers = headers
        self.body = body
        if content_length is None and isinstance(body, bytes):
            content_length = len(body)
        self.content_length = content_length
        self.tunnel = tunnel
        self.error: bytes | None = None  # x-gossamer-error of a generated response

    def discard(self) -> None:
        """Drop the body of a response that will not be sent (e.g. before a retry)."""
        if isinstance(self.body, BodyStream):
            self.body.abort_producer()


Service = Callable[[Request], Awaitable[Response]]
Layer = Callable[[Service], Service]


def generated(status: int, code: bytes, message: str = "") -> Response:
    """A response the sidecar makes itself, with `x-gossamer-error: code`."""
    text = (message or code.decode()).encode() + b"\n"
    resp = Response(
        status,
        [(b"content-type", b"text/plain"), (b"x-gossamer-error", code)],
        text,
    )
    resp.error = code
    return resp


def error_response(exc: BaseException) -> Response:
    """The generated response for a data-path failure."""
    for cls in type(exc).__mro__:
        entry = ERRORS.get(cls)
        if entry is not None:
            status, code = entry
            message = exc.message if isinstance(exc, GossamerError) else str(exc)
            return generated(status, code, message)
    return generated(500, b"internal-error", "internal error")


def compose(service: Service, *layers: Layer) -> Service:
    """Wrap `service` in `layers`, the first one outermost."""
    for layer in reversed(layers):
        service = layer(service)
    return service
