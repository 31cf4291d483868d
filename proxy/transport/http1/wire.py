"""HTTP/1.1 message heads: reading the framing out of parsed headers, writing heads.

A proxy forwards end-to-end headers and replaces hop-by-hop ones (RFC 9110 section
7.6.1): `Connection` and every header it names, `Keep-Alive`, `Proxy-Connection`, `TE`,
`Trailer`, `Transfer-Encoding`, `Upgrade`. Message framing (Content-Length or chunked)
is chosen again for each hop; `Upgrade` is forwarded only with `Connection: upgrade`.
Trailers of chunked bodies are not forwarded.
"""

from __future__ import annotations

from gossamer.proxy.service import REASONS, Headers
from gossamer.proxy.telemetry.trace_context import TRACE_HEADERS

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

# What parse_head does with a (lower-case) header name; absent: an ordinary header.
# Below _HOP: end-to-end headers it notes and keeps; from _HOP: hop-by-hop, not kept.
_REQUEST_ID, _EXPECT, _FORWARDED, _TRACE, _TRACE_PARENT = 1, 2, 3, 4, 5
_HOP, _HOST, _CONTENT_LENGTH, _TRANSFER_ENCODING, _CONNECTION, _UPGRADE = 10, 11, 12, 13, 14, 15
_KINDS: dict[bytes, int] = {
    **dict.fromkeys(HOP_BY_HOP, _HOP),
    b"host": _HOST,
    b"content-length": _CONTENT_LENGTH,
    b"transfer-encoding": _TRANSFER_ENCODING,
    b"connection": _CONNECTION,
    b"upgrade": _UPGRADE,
    b"x-request-id": _REQUEST_ID,
    b"expect": _EXPECT,
    **dict.fromkeys(FORWARDED, _FORWARDED),
    **dict.fromkeys(TRACE_HEADERS, _TRACE),
    _TRACEPARENT: _TRACE_PARENT,
}
_KIND_OF = _KINDS.get
_COLON_JOIN = b": ".join
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
    """Split raw headers into end-to-end headers and framing facts (one pass, one dict
    lookup per header: an ordinary header is kept as the same tuple)."""
    head = Head()
    kept = head.headers
    connection: list[bytes] = []
    upgrade = None
    kind_of = _KIND_OF
    for item in raw:
        kind = kind_of(item[0].lower())
        if kind is None:
            kept.append(item)
        elif kind < _HOP:
            kept.append(item)
            if kind >= _TRACE:  # the tracing layer skips its own scan
                head.trace_headers += 1
                if kind == _TRACE_PARENT and head.traceparent is None:
                    head.traceparent = item[1]
            elif kind == _FORWARDED:
                head.forwarded = True
            elif kind == _REQUEST_ID:
                head.request_id = True
            elif item[1].lower() == b"100-continue":  # _EXPECT
                head.expect_continue = True
        elif kind == _HOST:
            if head.host is not None:  # RFC 9112 §3.2: answered with 400 by the server
                raise ValueError("more than one Host header")
            head.host = item[1]
        elif kind == _CONTENT_LENGTH:
            head.content_length = int(item[1])  # llhttp has validated it
        elif kind == _TRANSFER_ENCODING:
            head.chunked = head.chunked or item[1].lower().rstrip().endswith(b"chunked")
        elif kind == _CONNECTION:
            connection.extend(t.strip().lower() for t in item[1].split(b","))
        elif kind == _UPGRADE:
            upgrade = item[1]
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
    if headers:  # `name: value` lines joined in C, no Python step per header
        parts += (b"\r\n".join(map(_COLON_JOIN, headers)), b"\r\n")


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
