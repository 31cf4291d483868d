"""RFC 9113 section 8.3 checks of an HTTP/2 request's header block (issue 17, finding 7)."""

from __future__ import annotations

import pytest

from gossamer.proxy.transport.h2.request_head import check_request_head

BASE = [
    (b":method", b"GET"),
    (b":scheme", b"http"),
    (b":authority", b"catalog:8080"),
    (b":path", b"/a?b=c"),
]


def with_(**values: bytes) -> list[tuple[bytes, bytes]]:
    return [(k, values.get(k[1:].decode(), v)) for k, v in BASE]


def test_well_formed_requests_pass() -> None:
    assert check_request_head([*BASE, (b"te", b"trailers"), (b"x-a", b"b")]) is None
    assert check_request_head(with_(method=b"OPTIONS", path=b"*")) is None
    assert (
        check_request_head([h for h in BASE if h[0] != b":authority"] + [(b"host", b"a")]) is None
    )
    assert check_request_head(with_(authority=b"[::1]:80", path=b"/%20x/~y|z")) is None


@pytest.mark.parametrize(
    "headers",
    [
        with_(path=b"/a b"),
        with_(path=b"http://evil/"),
        with_(path=b"evil"),
        with_(path=b""),
        with_(path=b"/a#frag"),
        with_(path=b"/a\tb"),
        with_(path=b"/a\r\nX: y"),
        with_(path=b"/\x7f"),
        with_(path=b"/\xc3\xa9"),
        with_(path=b"*"),  # * is for OPTIONS only
        with_(method=b"GET /x"),
        with_(method=b""),
        with_(method=b"CONNECT"),
        with_(scheme=b"ht tp"),
        with_(scheme=b"1http"),
        with_(authority=b"user@evil"),
        with_(authority=b"a/b"),
        with_(authority=b"a b"),
        with_(authority=b""),
        [h for h in BASE if h[0] != b":path"],
        [h for h in BASE if h[0] != b":method"],
        [h for h in BASE if h[0] != b":scheme"],
        [*BASE, (b":path", b"/x")],  # duplicated
        [*BASE, (b":status", b"200")],  # a response's pseudo-header
        [*BASE, (b":protocol", b"websocket")],  # unknown here
        [BASE[0], (b"x-a", b"b"), *BASE[1:]],  # pseudo-header after a regular field
        [*BASE, (b"connection", b"close")],
        [*BASE, (b"transfer-encoding", b"chunked")],
        [*BASE, (b"upgrade", b"h2c")],
        [*BASE, (b"keep-alive", b"1")],
        [*BASE, (b"proxy-connection", b"close")],
        [*BASE, (b"te", b"gzip")],
        [h for h in BASE if h[0] != b":authority"] + [(b"host", b"u@evil")],
    ],
)
def test_malformed_requests_are_refused(headers: list[tuple[bytes, bytes]]) -> None:
    assert check_request_head(headers) is not None
