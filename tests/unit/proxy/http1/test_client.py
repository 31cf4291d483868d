"""The HTTP/1.1 client protocol against scripted raw servers on loopback."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from gossamer.errors import RemoteProtocolError, UpstreamTimeout
from gossamer.proxy.service import PerTryTimeout, Request, UpstreamReset
from gossamer.proxy.transport.http1.body import BodyStream, RequestBody
from gossamer.proxy.transport.http1.client import Http1Client

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[int]:
    srv = await asyncio.start_server(handler, "127.0.0.1", 0)
    try:
        yield srv.sockets[0].getsockname()[1]
    finally:
        srv.close()


class Owner:
    def __init__(self) -> None:
        self.released: list[Http1Client] = []
        self.lost_count = 0

    def release(self, conn: Http1Client) -> None:
        self.released.append(conn)

    def lost(self, conn: Http1Client) -> None:
        self.lost_count += 1


async def connect(port: int, owner: Owner | None = None) -> Http1Client:
    client = Http1Client(owner)
    await asyncio.get_running_loop().create_connection(lambda: client, "127.0.0.1", port)
    return client


def get(path: bytes = b"/", method: str = "GET") -> Request:
    return Request(method, path, "up", [(b"accept", b"*/*")])


async def read_body(stream: object) -> bytes:
    if isinstance(stream, bytes):  # the whole body came with the head
        return stream
    assert isinstance(stream, BodyStream)
    data = b""
    while chunk := await stream.read():
        data += chunk
    return data


async def test_keep_alive_exchange_returns_the_connection():
    requests: list[bytes] = []

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        for _ in range(2):
            requests.append(await r.readuntil(b"\r\n\r\n"))
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nhi")
        await r.read()

    owner = Owner()
    async with raw_server(handler) as port:
        client = await connect(port, owner)
        for _ in range(2):
            resp = await client.send(get())
            assert resp.status == 200 and await read_body(resp.body) == b"hi"
        assert owner.released == [client, client]
        client.close()
    assert requests[0].startswith(b"GET / HTTP/1.1\r\nhost: up\r\naccept: */*\r\n")


async def test_chunked_and_close_delimited_responses():
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.readuntil(b"\r\n\r\n")
        w.write(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
        )
        await r.readuntil(b"\r\n\r\n")
        w.write(b"HTTP/1.1 200 OK\r\n\r\nuntil the end")
        await w.drain()
        w.close()

    owner = Owner()
    async with raw_server(handler) as port:
        client = await connect(port, owner)
        resp = await client.send(get())
        assert resp.content_length is None and await read_body(resp.body) == b"abcde"
        resp = await client.send(get())
        assert await read_body(resp.body) == b"until the end"
    assert owner.released == [client]  # the close-delimited one is not reused


async def test_streaming_request_body_is_rechunked():
    seen = asyncio.get_running_loop().create_future()

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        head = await r.readuntil(b"\r\n\r\n")
        body = await r.readuntil(b"0\r\n\r\n")
        seen.set_result(head + body)
        w.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await r.read()

    async with raw_server(handler) as port:
        client = await connect(port)
        stream = BodyStream()
        req = Request("POST", b"/up", "up", [], RequestBody(stream))
        task = asyncio.ensure_future(client.send(req))
        stream.feed(b"first")
        await asyncio.sleep(0.01)
        stream.feed(b"second")
        stream.finish()
        resp = await task
        assert resp.status == 204 and resp.body is None
        wire = await seen
        client.close()
    assert b"transfer-encoding: chunked" in wire
    assert wire.endswith(b"5\r\nfirst\r\n6\r\nsecond\r\n0\r\n\r\n")


async def test_informational_responses_are_relayed():
    interim: list[int] = []

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.readuntil(b"\r\n\r\n")
        w.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await r.read()

    async with raw_server(handler) as port:
        client = await connect(port)
        req = get()
        req.on_informational = lambda status, reason, headers: interim.append(status)
        resp = await client.send(req)
        client.close()
    assert interim == [100] and resp.status == 200


async def test_head_response_ends_at_its_head():
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.readuntil(b"\r\n\r\n")
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        await r.read()

    owner = Owner()
    async with raw_server(handler) as port:
        client = await connect(port, owner)
        resp = await asyncio.wait_for(client.send(get(method="HEAD")), 5)
        assert resp.body is None and resp.content_length == 100
    assert owner.released == []  # not reusable: the parser still expects a body


async def test_reset_before_the_response_is_upstream_reset():
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.readuntil(b"\r\n\r\n")
        w.close()

    async with raw_server(handler) as port:
        client = await connect(port)
        with pytest.raises(UpstreamReset):
            await client.send(get())


async def test_reset_mid_body_fails_the_stream():
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.readuntil(b"\r\n\r\n")
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await w.drain()
        w.close()

    async with raw_server(handler) as port:
        client = await connect(port)
        resp = await client.send(get())
        with pytest.raises(UpstreamReset):
            await read_body(resp.body)


async def test_malformed_response_is_a_protocol_error():
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.readuntil(b"\r\n\r\n")
        w.write(b"HTTP/1.1 abc nonsense\r\n\r\n")
        await r.read()

    async with raw_server(handler) as port:
        client = await connect(port)
        with pytest.raises(RemoteProtocolError):
            await client.send(get())


@pytest.mark.parametrize(("per_try", "error"), [(True, PerTryTimeout), (False, UpstreamTimeout)])
async def test_deadlines_abort_the_exchange(per_try, error):
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.read()

    async with raw_server(handler) as port:
        client = await connect(port)
        req = get()
        now = asyncio.get_running_loop().time()
        if per_try:
            req.try_deadline = now + 0.05
        else:
            req.deadline = now + 0.05
        with pytest.raises(error):
            await client.send(req)
        assert client.closed


async def test_upgrade_detaches_the_connection_as_a_tunnel():
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        head = await r.readuntil(b"\r\n\r\n")
        assert b"connection: upgrade\r\nupgrade: websocket\r\n" in head
        w.write(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\nearly"
        )
        await r.read()

    async with raw_server(handler) as port:
        client = await connect(port)
        req = get(b"/ws")
        req.upgrade = b"websocket"
        resp = await client.send(req)
        assert resp.status == 101 and resp.tunnel is not None
        assert resp.tunnel.pending == b"early"
        resp.tunnel.transport.close()
