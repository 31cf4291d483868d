"""The HTTP/1.1 server protocol over real loopback sockets, with a scripted service."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from gossamer.proxy.service import Request, Response
from gossamer.proxy.transport.http1.body import BodyStream
from gossamer.proxy.transport.http1.conns import ConnectionInfo, ConnectionTracker
from gossamer.proxy.transport.http1.server import Http1Server, ServerLimits

SEEN: list[Request] = []


async def service(req: Request) -> Response:
    SEEN.append(req)
    path = req.path
    if path == b"/echo":
        data = b""
        if req.body is not None:
            reader = req.body.reader()
            while chunk := await reader.read():
                data += chunk
        return Response(200, [(b"x-method", req.method.encode())], data)
    if path == b"/stream":
        stream = BodyStream()
        stream.feed(b"part1-")

        async def later() -> None:
            await asyncio.sleep(0.01)
            stream.feed(b"part2")
            stream.finish()

        asyncio.get_running_loop().create_task(later())
        return Response(200, [], stream)
    if path == b"/continue":
        assert req.on_informational is not None
        req.on_informational(100, b"Continue", [])
        assert req.body is not None
        body_reader = req.body.reader()
        data = b""
        while chunk := await body_reader.read():
            data += chunk
        return Response(201, [], data)
    if path.startswith(b"/slow"):
        await asyncio.sleep(0.2)
        return Response(200, [], b"slow")
    return Response(200, [(b"x-path", path)], b"ok " + req.authority.encode())


@contextlib.asynccontextmanager
async def server(limits: ServerLimits | None = None) -> AsyncIterator[int]:
    tracker = ConnectionTracker(interval=0.05)
    lim = limits or ServerLimits()
    srv = await asyncio.get_running_loop().create_server(
        lambda: Http1Server(service, ConnectionInfo("test"), tracker, lim), "127.0.0.1", 0
    )
    try:
        yield srv.sockets[0].getsockname()[1]
    finally:
        srv.close()
        await tracker.drain(0.1)
        tracker.stop()


async def exchange(
    port: int, data: bytes, *, until_close: bool = True, timeout: float = 5.0
) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    try:
        async with asyncio.timeout(timeout):
            if until_close:
                return await reader.read(-1)
            return await reader.read(65536)
    finally:
        writer.close()


async def test_keep_alive_and_pipelining_keep_order():
    async with server() as port:
        out = await exchange(
            port,
            b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /slow HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
    assert out.count(b"HTTP/1.1 200") == 3
    assert out.index(b"x-path: /a") < out.index(b"slow") < out.index(b"x-path: /c")


async def test_chunked_request_body_and_known_length_response():
    async with server() as port:
        out = await exchange(
            port,
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        )
    assert out.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"content-length: 11\r\n" in out and out.endswith(b"hello world")


async def test_streamed_response_is_chunked_for_http11_and_close_delimited_for_http10():
    async with server() as port:
        out11 = await exchange(
            port, b"GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        out10 = await exchange(port, b"GET /stream HTTP/1.0\r\nHost: x\r\n\r\n")
    assert b"transfer-encoding: chunked" in out11
    assert out11.endswith(b"6\r\npart1-\r\n5\r\npart2\r\n0\r\n\r\n")
    assert b"transfer-encoding" not in out10 and out10.endswith(b"part1-part2")


async def test_absolute_form_sets_authority_and_proxy_form():
    SEEN.clear()
    async with server() as port:
        out = await exchange(
            port,
            b"GET http://Catalog:8080/x?q=1 HTTP/1.1\r\nHost: other\r\nConnection: close\r\n\r\n",
        )
    assert b"ok catalog:8080" in out and b"x-path: /x?q=1" in out
    assert SEEN[-1].proxy_form


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (b"GARBAGE\r\n\r\n", b"400", b"bad-request"),
        (b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n", b"400", b"bad-request"),
        (
            b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"400",
            b"bad-request",
        ),
        (b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n", b"431", b"headers-too-large"),
        (
            b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(150)) + b"\r\n",
            b"431",
            b"headers-too-large",
        ),
        (b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n", b"414", b"uri-too-long"),
        (b"GET https://x/ HTTP/1.1\r\n\r\n", b"400", b"bad-request"),
    ],
)
async def test_bad_requests_get_an_error_and_the_connection_closes(request_bytes, status, code):
    async with server() as port:
        out = await exchange(port, request_bytes)
    assert out.startswith(b"HTTP/1.1 " + status)
    assert b"x-gossamer-error: " + code in out
    assert b"connection: close" in out


async def test_a_huge_header_without_end_is_cut_off():
    async with server() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nX-Endless: ")
        with contextlib.suppress(ConnectionError):
            for _ in range(40):
                writer.write(b"a" * 8192)
                await writer.drain()
        async with asyncio.timeout(5):
            out = await reader.read(-1)
        writer.close()
    assert out.startswith(b"HTTP/1.1 431")


async def test_slow_headers_get_408_and_idle_connections_close():
    limits = ServerLimits(header_timeout=0.2, idle_timeout=0.3)
    async with server(limits) as port:
        out = await exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finishes
        assert out.startswith(b"HTTP/1.1 408")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        async with asyncio.timeout(5):
            first = await reader.readuntil(b"ok x")
            rest = await reader.read(-1)  # then idle: closed by the server
        writer.close()
    assert first.startswith(b"HTTP/1.1 200") and rest == b""


async def test_bad_connection_does_not_disturb_others():
    async with server() as port:
        good_r, good_w = await asyncio.open_connection("127.0.0.1", port)
        bad = await exchange(port, b"\x00\x01\x02 nonsense\r\n\r\n")
        good_w.write(b"GET /fine HTTP/1.1\r\nHost: x\r\n\r\n")
        async with asyncio.timeout(5):
            out = await good_r.readuntil(b"ok x")
        good_w.close()
    assert bad.startswith(b"HTTP/1.1 400")
    assert out.startswith(b"HTTP/1.1 200")


async def test_head_response_has_length_but_no_body():
    async with server() as port:
        out = await exchange(port, b"HEAD /h HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200") and out.endswith(b"\r\n\r\n")
    assert b"content-length: 0" not in out


async def test_expect_continue_relays_the_interim_response():
    async with server() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /continue HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        )
        async with asyncio.timeout(5):
            interim = await reader.readuntil(b"\r\n\r\n")
            writer.write(b"data")
            final = await reader.readuntil(b"data")
        writer.close()
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert final.startswith(b"HTTP/1.1 201")


async def test_client_gone_mid_request_cancels_the_service():
    async with server() as port:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.sleep(0.05)
        writer.close()
        await asyncio.sleep(0.3)
        out = await exchange(port, b"GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize(
    ("target", "authority", "path"),
    [
        (b"http://Catalog?token=x", b"catalog", b"/?token=x"),
        (b"http://catalog:8080?q=1#frag", b"catalog:8080", b"/?q=1"),
    ],
)
async def test_absolute_form_without_a_slash_keeps_the_query_out_of_the_authority(
    target, authority, path
):
    SEEN.clear()
    async with server() as port:
        out = await exchange(port, b"GET " + target + b" HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert out.endswith(b"ok " + authority)
    assert SEEN[-1].authority == authority.decode() and SEEN[-1].path == path
