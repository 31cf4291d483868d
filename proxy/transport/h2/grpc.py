"""gRPC rules on the data path (pure): status codes, `grpc-timeout`, classification,
retry conditions and the trailers-only responses the sidecar generates.

Theory of operation (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md):
- A gRPC request has `content-type: application/grpc[+proto|;...]`. The response is
  HTTP 200 with the status in the trailers (`grpc-status`, `grpc-message`), or, when the
  call fails before any message, in the headers of a *trailers-only* response (HEADERS
  with END_STREAM). The HTTP status stays the `response_code` label; the gRPC status
  decides the classification (any status other than OK is a failure).
- `grpc-timeout` is `<1..8 digits><unit>` with unit H, M, S, m, u or n. The sidecar
  takes the earlier of it and the route's timeout as the call's deadline, and sends the
  upstream the time that remains (in the finest unit that fits, rounded up).
- Retries on gRPC statuses follow Envoy's `x-envoy-retry-grpc-on` names and only apply
  to trailers-only responses (the status is known before anything reached the client).
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import quote

Headers = list[tuple[bytes, bytes]]

OK = 0
CANCELLED = 1
UNKNOWN = 2
DEADLINE_EXCEEDED = 4
RESOURCE_EXHAUSTED = 8
INTERNAL = 13
UNAVAILABLE = 14

# Envoy's retry_on names for gRPC statuses
# HTTP status -> gRPC status for answers that carry no grpc-status (the spec's table)
HTTP_TO_GRPC: dict[int, int] = {
    400: INTERNAL,
    401: 16,
    403: 7,
    404: 12,
    429: UNAVAILABLE,
    502: UNAVAILABLE,
    503: UNAVAILABLE,
    504: UNAVAILABLE,
}

_UNITS = {b"H": 3600.0, b"M": 60.0, b"S": 1.0, b"m": 1e-3, b"u": 1e-6, b"n": 1e-9}
_MAX_DIGITS = 8


def is_grpc(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Whether a request's headers say gRPC (content-type application/grpc...)."""
    for k, v in headers:
        if k == b"content-type":
            return v[:16].lower() == b"application/grpc"
    return False


def parse_timeout(value: bytes) -> float | None:
    """`grpc-timeout` -> seconds; None when malformed (then it is ignored)."""
    if len(value) < 2:
        return None
    digits, unit = value[:-1], value[-1:]
    if len(digits) > _MAX_DIGITS or not digits.isdigit() or unit not in _UNITS:
        return None
    return int(digits) * _UNITS[unit]


def format_timeout(seconds: float) -> bytes:
    """Seconds -> the most precise `grpc-timeout` that fits in 8 digits (rounded up)."""
    seconds = max(seconds, 0.0)
    for unit, scale in ((b"n", 1e-9), (b"u", 1e-6), (b"m", 1e-3), (b"S", 1.0), (b"M", 60.0)):
        amount = -int(-seconds // scale)  # ceil
        if amount < 10**_MAX_DIGITS:
            return b"%d%s" % (amount, unit)
    return b"%dH" % min(-int(-seconds // 3600.0), 10**_MAX_DIGITS - 1)


def status_of(headers: Iterable[tuple[bytes, bytes]] | None) -> int | None:
    """The grpc-status in headers or trailers; None when absent; UNKNOWN when garbled."""
    if not headers:
        return None
    for k, v in headers:
        if k == b"grpc-status":
            return int(v) if v.isdigit() and len(v) <= 3 else UNKNOWN
    return None


def failed(http_status: int, grpc_status: int | None) -> bool:
    """Classification: a failure for 5xx/no response, or a gRPC status other than OK."""
    if http_status >= 500 or http_status <= 0:
        return True
    return grpc_status is not None and grpc_status != OK


def trailers_only(status: int, message: str, http_status: int = 200) -> Headers:
    """The header block of a trailers-only response the sidecar makes itself."""
    return [
        (b":status", b"%d" % http_status),
        (b"content-type", b"application/grpc"),
        (b"grpc-status", b"%d" % status),
        (b"grpc-message", quote(message, safe=" !#$&'()*+,/:;=?@[]~").encode()),
    ]


def status_for_error(http_status: int) -> int:
    """The gRPC status a gRPC client should see for a generated HTTP error."""
    return HTTP_TO_GRPC.get(http_status, UNKNOWN if http_status >= 500 else INTERNAL)
