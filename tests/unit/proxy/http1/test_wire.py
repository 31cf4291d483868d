"""Header blocks: hop-by-hop headers and framing facts; head serialisation."""

from __future__ import annotations

from gossamer.proxy.transport.http1.wire import (
    chunk,
    no_body,
    parse_head,
    request_head,
    response_head,
)


def test_hop_by_hop_headers_are_removed_and_framing_read():
    head = parse_head(
        [
            (b"Host", b"catalog:8080"),
            (b"Connection", b"keep-alive, X-Secret"),
            (b"Keep-Alive", b"timeout=5"),
            (b"X-Secret", b"drop me"),
            (b"Transfer-Encoding", b"chunked"),
            (b"TE", b"trailers"),
            (b"Proxy-Connection", b"keep-alive"),
            (b"Accept", b"*/*"),
            (b"Expect", b"100-continue"),
        ]
    )
    assert head.headers == [(b"Accept", b"*/*"), (b"Expect", b"100-continue")]
    assert head.host == b"catalog:8080"
    assert head.chunked and head.content_length is None
    assert head.expect_continue and not head.close and head.upgrade is None


def test_upgrade_needs_connection_upgrade():
    assert parse_head([(b"Upgrade", b"websocket")]).upgrade is None
    head = parse_head([(b"Connection", b"Upgrade"), (b"Upgrade", b"websocket")])
    assert head.upgrade == b"websocket"


def test_close_and_length():
    head = parse_head([(b"connection", b"close"), (b"content-length", b"12")])
    assert head.close and head.content_length == 12 and head.headers == []


def test_heads_serialise():
    req = b"".join(request_head("GET", b"/x", "catalog", [(b"a", b"1")], b"content-length: 0\r\n"))
    assert req == b"GET /x HTTP/1.1\r\nhost: catalog\r\na: 1\r\ncontent-length: 0\r\n\r\n"
    resp = b"".join(response_head(503, b"Service Unavailable", [(b"b", b"2")], b""))
    assert resp == b"HTTP/1.1 503 Service Unavailable\r\nb: 2\r\n\r\n"
    assert chunk(b"hello") == b"5\r\nhello\r\n"


def test_no_body_statuses():
    assert no_body(204, "GET") and no_body(304, "GET") and no_body(100, "GET")
    assert no_body(200, "HEAD") and not no_body(200, "GET")


def test_trace_headers_are_counted_for_the_tracing_layer():
    tp = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
    head = parse_head([(b"Host", b"a"), (b"TraceParent", tp), (b"accept", b"*/*")])
    assert (head.trace_headers, head.traceparent) == (1, tp)
    head = parse_head([(b"x-b3-traceid", b"1"), (b"traceparent", tp), (b"traceparent", b"x")])
    assert (head.trace_headers, head.traceparent) == (3, tp)
    assert (parse_head([(b"accept", b"*/*")]).trace_headers, head.traceparent) == (0, tp)
    # a header the Connection header names is dropped after counting: count unknown
    head = parse_head([(b"traceparent", tp), (b"connection", b"traceparent")])
    assert head.headers == [] and (head.trace_headers, head.traceparent) == (-1, None)
