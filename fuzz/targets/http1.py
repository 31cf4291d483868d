"""HTTP/1.1 request and response path: client bytes -> the sidecar's server protocol ->
the pool's HTTP/1.1 client -> a fake app whose answer is fuzz bytes too.

Input: one control byte, the client's bytes, then (after a line `--app--`) the bytes
the app answers each request with. Control bits: 0x80 feed the client's bytes in
slices of (c & 0x3f) + 1 bytes; 0x40 the app closes its connection after answering;
0x20 the app answers in 7-byte slices.

The chain is the sidecar's own, minus routing: `Http1Server` -> `errors_layer` -> an
`EndpointPool` whose connector attaches an in-memory transport instead of a socket ->
`Http1Client.send`. Rules: no exception reaches the event loop, nothing is logged at
ERROR (the server logs an exception it turned into a 500), and whatever the client
receives starts as an HTTP/1.x response.
"""

from __future__ import annotations

import asyncio

from fuzz.aio import MemoryTransport, target_driver
from fuzz.harness import FuzzBug, Reader, no_logged_errors, split
from fuzz.stubs import QuietTracker
from gossamer.proxy.routing.layers import errors_layer
from gossamer.proxy.service import Request, Response, Service
from gossamer.proxy.transport.http1.client import Http1Client
from gossamer.proxy.transport.http1.conns import ConnectionInfo
from gossamer.proxy.transport.http1.server import Http1Server
from gossamer.proxy.transport.pool import EndpointPool

APP_SEPARATOR = b"\n--app--\n"
DEFAULT_ANSWER = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


class FakeApp:
    """Answers every request head written to it with the same bytes."""

    def __init__(self, answer: bytes, *, close: bool, sliced: bool) -> None:
        self.answer = answer
        self.close = close
        self.sliced = sliced

    async def connect(self, conn: Http1Client, _seconds: float) -> MemoryTransport:
        loop = asyncio.get_running_loop()
        transport = MemoryTransport(loop, conn)

        def received(data: bytes) -> None:
            first_line = data.split(b"\r\n", 1)[0]
            if first_line.endswith((b" HTTP/1.1", b" HTTP/1.0")):
                loop.call_soon(self._answer, conn, transport)

        transport.on_write = received
        conn.connection_made(transport)
        return transport

    def _answer(self, conn: Http1Client, transport: MemoryTransport) -> None:
        step = 7 if self.sliced else max(1, len(self.answer))
        for start in range(0, len(self.answer), step):
            if transport.lost:
                return
            conn.data_received(self.answer[start : start + step])
        if self.close and not transport.lost:
            conn.eof_received()
            transport.lose()


def _service(pool: EndpointPool) -> Service:
    """The data path from the server to the pool: errors become generated responses."""

    async def call(req: Request) -> Response:
        conn, _ = await pool.acquire(req.deadline)
        return await conn.send(req)

    return errors_layer(call)


def test_one_input(data: bytes) -> None:
    driver = target_driver(__name__)
    reader = Reader(data)
    control = reader.byte()
    client, answer = split(reader.rest(), APP_SEPARATOR, 2)
    app = FakeApp(answer or DEFAULT_ANSWER, close=bool(control & 0x40), sliced=bool(control & 0x20))
    with no_logged_errors():
        pool = EndpointPool(app.connect, clock=driver.loop.time)

        async def build() -> Http1Server:
            return Http1Server(
                _service(pool), ConnectionInfo("outbound", "127.0.0.1"), QuietTracker()
            )

        server, transport = driver.connect(build)
        step = (control & 0x3F) + 1 if control & 0x80 else max(1, len(client))
        driver.feed(server, transport, client, step)
        transport.lose()
        pool.close()
        driver.finish()
    out = bytes(transport.written)
    if out and not out.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")):
        raise FuzzBug(f"the client received something other than a response: {out[:80]!r}")
