"""The sidecar's small gRPC client against a real grpcio server over real sockets:
unary and bidirectional calls, statuses and messages, flow control with large
messages, deadlines, cancellation, a server that goes away, keepalive, and TLS."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from gossamer.certs.ca import CertificateAuthority
from gossamer.certs.ca_reload import CaReloader
from gossamer.control.server_certs import CONTROL_TLS_NAME, ServerCertificates
from gossamer.proxy.agent.bootstrap import _client_context
from gossamer.proxy.transport.grpc_client import Channel, GrpcError, Status

pytestmark = pytest.mark.e2e
SERVICE = "test.Echo"
BIG = 3 * 1024 * 1024 + 17


class Servicer:
    def __init__(self) -> None:
        self.ended = 0  # Chat calls over (by "bye", by the client's end, or cancelled)
        self.ended_event = asyncio.Event()

    async def echo(self, request: bytes, context: Any) -> bytes:
        return request[::-1]

    async def fail(self, request: bytes, context: Any) -> bytes:
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, "no entry: 100% denied ✗")
        raise AssertionError

    async def big(self, request: bytes, context: Any) -> bytes:
        return bytes(len(request) % 251 for _ in range(1)) * BIG

    async def slow(self, request: bytes, context: Any) -> bytes:
        await asyncio.sleep(5)
        return b""

    async def chat(self, requests: Any, context: Any) -> Any:
        try:
            async for message in requests:
                if message == b"bye":
                    return
                yield message.upper()
        finally:
            self.ended += 1
            self.ended_event.set()

    def handler(self) -> grpc.GenericRpcHandler:
        unary = grpc.unary_unary_rpc_method_handler
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Echo": unary(self.echo),
                "Fail": unary(self.fail),
                "Big": unary(self.big),
                "Slow": unary(self.slow),
                "Chat": grpc.stream_stream_rpc_method_handler(self.chat),
            },
        )


@pytest.fixture
async def server():
    servicer = Servicer()
    srv = grpc.aio.server(options=[("grpc.max_receive_message_length", 16 << 20),
                                   ("grpc.max_send_message_length", 16 << 20)])  # fmt: skip
    srv.add_generic_rpc_handlers([servicer.handler()])
    port = srv.add_insecure_port("127.0.0.1:0")
    await srv.start()
    yield srv, port, servicer
    await srv.stop(0)


def path(method: str) -> str:
    return f"/{SERVICE}/{method}"


async def test_unary_and_status(server) -> None:
    _, port, _ = server
    async with Channel("127.0.0.1", port, None, "localhost") as ch:
        assert await ch.unary(path("Echo"), b"abc") == b"cba"
        assert await ch.unary(path("Echo"), b"") == b""
        with pytest.raises(GrpcError) as info:
            await ch.unary(path("Fail"), b"x")
        assert info.value.code() is Status.PERMISSION_DENIED
        assert info.value.details() == "no entry: 100% denied ✗"
        with pytest.raises(GrpcError) as info:
            await ch.unary(path("Nope"), b"x")
        assert info.value.code() is Status.UNIMPLEMENTED
        # large messages both ways: flow control windows are respected and reopened
        reply = await ch.unary(path("Big"), b"q" * BIG, timeout=30)
        assert len(reply) == BIG


async def test_streams_deadlines_and_cancellation(server) -> None:
    _, port, servicer = server
    async with Channel("127.0.0.1", port, None, "localhost") as ch:
        stream = await ch.stream(path("Chat"))
        for i in range(200):
            await stream.send(b"m%d" % i)
        got = [await stream.recv() for _ in range(200)]
        assert got == [b"M%d" % i for i in range(200)]
        await stream.send(b"bye")
        assert await stream.recv() is None  # ended with OK
        with pytest.raises(GrpcError) as info:
            await ch.unary(path("Slow"), b"", timeout=0.3)
        assert info.value.code() is Status.DEADLINE_EXCEEDED
        stream = await ch.stream(path("Chat"))
        await stream.send(b"hi")
        assert await stream.recv() == b"HI"
        ended = servicer.ended
        stream.cancel()  # (the request side is still open: only the reset ends the call)
        while servicer.ended == ended:
            servicer.ended_event.clear()
            await asyncio.wait_for(servicer.ended_event.wait(), 5)
        with pytest.raises(GrpcError) as info:
            await stream.recv()
        assert info.value.code() is Status.CANCELLED
        assert await ch.unary(path("Echo"), b"still") == b"llits"  # the connection lives on


async def test_server_going_away_fails_open_streams(server) -> None:
    srv, port, _ = server
    ch = Channel("127.0.0.1", port, None, "localhost")
    stream = await ch.stream(path("Chat"))
    await stream.send(b"a")
    assert await stream.recv() == b"A"
    await srv.stop(0)
    with pytest.raises(GrpcError) as info:
        await asyncio.wait_for(stream.recv(), 5)
    assert info.value.code() in (Status.UNAVAILABLE, Status.CANCELLED)
    with pytest.raises(GrpcError) as info:
        await ch.unary(path("Echo"), b"x", timeout=2)
    assert info.value.code() is Status.UNAVAILABLE
    await ch.close()


async def test_keepalive_notices_a_silent_server() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1 << 20)  # accepts, reads, never answers
        await asyncio.sleep(30)

    srv = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        ch = Channel("127.0.0.1", port, None, "x", keepalive=0.2, keepalive_timeout=0.3)
        stream = await ch.stream(path("Chat"))
        with pytest.raises(GrpcError) as info:
            await asyncio.wait_for(stream.recv(), 5)
        assert info.value.code() is Status.UNAVAILABLE
        assert "keepalive" in info.value.details()
        await ch.close()
    finally:
        srv.close()


async def test_tls_with_the_control_planes_certificate(tmp_path) -> None:
    CertificateAuthority.init(tmp_path / "ca", "gossamer.local")
    reloader = CaReloader(tmp_path / "ca")
    certs = ServerCertificates(reloader.get)
    servicer = Servicer()
    srv = grpc.aio.server()
    srv.add_generic_rpc_handlers([servicer.handler()])
    port = srv.add_secure_port("127.0.0.1:0", certs.credentials(require_client_auth=False))
    await srv.start()
    try:
        context = _client_context(reloader.get().trust_bundle_pem())
        async with Channel("127.0.0.1", port, context, CONTROL_TLS_NAME) as ch:
            assert await ch.unary(path("Echo"), b"tls") == b"slt"
        # a name the certificate does not carry fails the handshake: no call is made
        async with Channel("127.0.0.1", port, context, "elsewhere") as ch:
            with pytest.raises(GrpcError) as info:
                await ch.unary(path("Echo"), b"x")
            assert info.value.code() is Status.UNAVAILABLE and "TLS" in info.value.details()
    finally:
        await srv.stop(0)
