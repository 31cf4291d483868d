"""HTTP/1.1 message heads: reading the framing out of parsed headers, writing heads.

A proxy forwards end-to-end headers and replaces hop-by-hop ones (RFC 9110 section
7.6.1): `Connection` and every header it names, `Keep-Alive`, `Proxy-Connection`, `TE`,
`Trailer`, `Transfer-Encoding`, `Upgrade`. Message framing (Content-Length or chunked)
is chosen again for each hop; `Upgrade` is forwarded only with `Connection: upgrade`.
Trailers of chunked bodies are not forwarded.
"""

from __future__ import annotations

from gossamer.proxy.service import REASONS, Headers
from gossamer.proxy.trace_context import TRACE_HEADERS

_TRACEPARENT = b"traceparent"

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",  # framing: re-created per hop from the parsed length
        b"host",  # requests: re-created from the authority
    }
)

FORWARDED = frozenset({b"x-forwarded-for", b"x-forwarded-client-cert"})
LAST_CHUNK = b"0\r\n\r\n"
CHUNKED = b"transfer-encoding: chunked\r\n"


class Head:
    """What the framing and routing need from a header block."""

    __slots__ = (
        "chunked",
        "close",
        "content_length",
        "expect_continue",
        "forwarded",
        "headers",
        "host",
        "request_id",
        "trace_headers",
        "traceparent",
        "upgrade",
    )

    def __init__(self) -> None:
        self.headers: Headers = []
        self.host: bytes | None = None
        self.content_length: int | None = None
        self.chunked = False
        self.close = False
        self.upgrade: bytes | None = None
        self.expect_continue = False
        self.request_id = False  # an x-request-id header is present
        self.forwarded = False  # x-forwarded-for or x-forwarded-client-cert is present
        self.trace_headers = 0  # how many trace-context headers (-1: not counted)
        self.traceparent: bytes | None = None  # the first traceparent's value


def parse_head(raw: Headers) -> Head:
    """Split raw headers into end-to-end headers and framing facts (one pass)."""
    head = Head()
    kept = head.headers
    connection: list[bytes] = []
    upgrade = None
    for name, value in raw:
        lname = name.lower()
        if lname not in HOP_BY_HOP:
            if lname == b"x-request-id":
                head.request_id = True
            elif lname == b"expect" and value.lower() == b"100-continue":
                head.expect_continue = True
            elif lname in FORWARDED:
                head.forwarded = True
            elif lname in TRACE_HEADERS:  # the tracing layer skips its own scan
                head.trace_headers += 1
                if lname == _TRACEPARENT and head.traceparent is None:
                    head.traceparent = value
            kept.append((name, value))
        elif lname == b"host":
            if head.host is None:
                head.host = value
        elif lname == b"content-length":
            head.content_length = int(value)  # llhttp has validated it
        elif lname == b"transfer-encoding":
            head.chunked = head.chunked or value.lower().rstrip().endswith(b"chunked")
        elif lname == b"connection":
            connection.extend(t.strip().lower() for t in value.split(b","))
        elif lname == b"upgrade":
            upgrade = value
    if connection:
        head.close = b"close" in connection
        if upgrade is not None and b"upgrade" in connection:
            head.upgrade = upgrade
        named = set(connection) - {b"close", b"keep-alive", b"upgrade"}
        if named:
            head.headers = [(k, v) for k, v in kept if k.lower() not in named]
            head.trace_headers, head.traceparent = -1, None  # counted before the removal
    return head


def _header_lines(parts: list[bytes], headers: Headers) -> None:
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")


def request_head(
    method: str, target: bytes, authority: str, headers: Headers, framing: bytes
) -> list[bytes]:
    """Request line, Host, headers and framing (pieces for one `b"".join`)."""
    parts = [method.encode(), b" ", target, b" HTTP/1.1\r\nhost: ", authority.encode(), b"\r\n"]
    _header_lines(parts, headers)
    parts += (framing, b"\r\n")
    return parts


def response_head(status: int, reason: bytes, headers: Headers, framing: bytes) -> list[bytes]:
    parts = [b"HTTP/1.1 %d " % status, reason or REASONS.get(status, b""), b"\r\n"]
    _header_lines(parts, headers)
    parts += (framing, b"\r\n")
    return parts


def content_length(n: int) -> bytes:
    return b"content-length: %d\r\n" % n


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


def no_body(status: int, method: str) -> bool:
    """Responses that never have a body (RFC 9112 section 6.3)."""
    return status < 200 or status in (204, 304) or method == "HEAD"
