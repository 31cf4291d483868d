"""HTTP/2 frame path: frames after the client preface -> the sidecar's `H2Server` (on
the `h2` package) -> a stub service.

Input: one control byte, then the bytes that follow the connection preface. Control
bits: 0x80 feed them in slices of (c & 0x3f) + 1 bytes; 0x40 the service streams its
answer (a `BodyStream` fed in two parts) instead of one buffer.

The service echoes the request body (read in full, as the data path's retries do)
behind `errors_layer`; a path starting `/fail` raises the data path's timeout error.
Rules: no exception out of `data_received` or into the event loop, nothing logged at
ERROR.
"""

from __future__ import annotations

from fuzz.aio import target_driver
from fuzz.harness import Reader, no_logged_errors
from fuzz.stubs import QuietTracker
from gossamer.errors import UpstreamTimeout
from gossamer.proxy.routing.layers import errors_layer
from gossamer.proxy.service import Request, Response, Service
from gossamer.proxy.transport.h2.conn import PREFACE
from gossamer.proxy.transport.h2.server import H2Server
from gossamer.proxy.transport.http1.body import BodyStream
from gossamer.proxy.transport.http1.conns import ConnectionInfo

MAX_BODY = 1 << 20


def _service(streamed: bool) -> Service:
    """The stub upstream behind the errors layer."""

    async def call(req: Request) -> Response:
        if req.path.startswith(b"/fail"):
            raise UpstreamTimeout("the stub upstream timed out")
        data = b""
        if req.body is not None:
            reader = req.body.reader()
            while len(data) < MAX_BODY and (chunk := await reader.read()):
                data += chunk
        headers = [(b"content-type", b"application/octet-stream"), (b"x-path", req.path[:64])]
        if not streamed:
            return Response(200, headers, data or b"empty")
        stream = BodyStream()
        stream.feed(data[: len(data) // 2])
        stream.feed(data[len(data) // 2 :] or b"end")
        stream.finish()
        return Response(200, headers, stream)

    return errors_layer(call)


def test_one_input(data: bytes) -> None:
    driver = target_driver(__name__)
    reader = Reader(data)
    control = reader.byte()
    frames = PREFACE + reader.rest()
    with no_logged_errors():

        async def build() -> H2Server:
            return H2Server(
                _service(bool(control & 0x40)),
                ConnectionInfo("outbound", "127.0.0.1"),
                QuietTracker(),
            )

        server, transport = driver.connect(build)
        step = (control & 0x3F) + 1 if control & 0x80 else len(frames)
        driver.feed(server, transport, frames, step)
        transport.lose()
        driver.finish()
