"""The HTTP/2 client, pool and server against each other on loopback sockets: trailers,
multiplexing on one connection, flow control bounding what a slow reader makes the
sidecar hold, resets propagating both ways, GOAWAY (open streams finish, new ones go
to a new connection), and h2c prior-knowledge detection on an HTTP/1.1 listener."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from gossamer.proxy.service import Request, Response, Service, UpstreamReset
from gossamer.proxy.transport.h2.client import H2Client, StreamRefused
from gossamer.proxy.transport.h2.conn import STREAM_WINDOW, H2Body
from gossamer.proxy.transport.h2.pool import H2Pool
from gossamer.proxy.transport.h2.server import H2Server
from gossamer.proxy.transport.http1.body import BodyStream, RequestBody
from gossamer.proxy.transport.http1.conns import ConnectionInfo, ConnectionTracker
from gossamer.proxy.transport.http1.server import Http1Server


class App:
    """What the server side runs for each stream (records what it saw)."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.cancelled = 0
        self.release = asyncio.Event()
        self.producer: BodyStream | None = None

    async def __call__(self, req: Request) -> Response:
        self.requests.append(req)
        if req.path == b"/trailers":
            body = req.body.stream if req.body else None
            data = b""
            if body is not None:
                while chunk := await body.read():
                    data += chunk
            out = H2Body(lambda n: None, lambda: None)
            out.feed(data[::-1])
            out.trailers = [(b"grpc-status", b"0"), (b"x-sum", b"%d" % len(data))]
            out.finish()
            return Response(200, [(b"content-type", b"application/grpc")], out)
        if req.path == b"/wait":
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
            return Response(200, [], b"released")
        if req.path == b"/firehose":
            self.producer = BodyStream(None)
            return Response(200, [], self.producer)
        return Response(200, [(b"x-path", req.path)], b"ok")


@contextlib.asynccontextmanager
async def h2_server(service: Service) -> AsyncIterator[tuple[int, ConnectionTracker]]:
    tracker = ConnectionTracker()
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(
        lambda: H2Server(service, ConnectionInfo("inbound"), tracker), "127.0.0.1", 0
    )
    try:
        yield srv.sockets[0].getsockname()[1], tracker
    finally:
        tracker.stop()
        srv.close()


def pool_for(port: int) -> H2Pool:
    async def connect(conn: H2Client, allowed: float) -> object:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_connection(lambda: conn, "127.0.0.1", port)
        return transport

    return H2Pool(connect, clock=time.monotonic)


def request(path: bytes, body: bytes | None = None) -> Request:
    stream = None
    if body is not None:
        s = BodyStream(None)
        s.feed(body)
        s.finish()
        stream = RequestBody(s)
    return Request("POST", path, "svc:80", [(b"content-type", b"application/grpc")], stream)


async def read_all(body: object) -> bytes:
    assert isinstance(body, BodyStream)
    out = b""
    while chunk := await body.read():
        out += chunk
    return out


async def test_trailers_and_bodies_cross_and_calls_share_one_connection() -> None:
    app = App()
    async with h2_server(app) as (port, _):
        pool = pool_for(port)

        async def call(i: int) -> tuple[bytes, list[tuple[bytes, bytes]] | None]:
            conn, _ = await pool.acquire()
            resp = await conn.send(request(b"/trailers", b"payload-%d" % i))
            assert isinstance(resp.body, H2Body)
            return await read_all(resp.body), resp.body.trailers

        results = await asyncio.gather(*(call(i) for i in range(20)))
        for i, (data, trailers) in enumerate(results):
            assert data == (b"payload-%d" % i)[::-1]
            assert trailers == [(b"grpc-status", b"0"), (b"x-sum", b"%d" % len(b"payload-%d" % i))]
        assert pool.connects_total == 1  # twenty calls multiplexed on one connection
        pool.close()


async def test_a_slow_reader_stops_the_upstream_at_the_window() -> None:
    app = App()
    async with h2_server(app) as (port, tracker):
        pool = pool_for(port)
        conn, _ = await pool.acquire()
        resp = await conn.send(request(b"/firehose"))
        producer = app.producer
        assert producer is not None and isinstance(resp.body, H2Body)
        chunk = b"x" * 65536
        for _ in range(64):  # 4 MiB offered by the upstream app
            producer.feed(chunk)
        await asyncio.sleep(0.3)
        # nobody reads: the client holds one stream window, no more, and the server
        # waits for credit (its send window on the stream is used up)
        held = resp.body._size
        assert held == STREAM_WINDOW
        (server,) = tracker.live
        assert isinstance(server, H2Server)
        assert server.h2.local_flow_control_window(1) == 0
        # reading returns credit and the transfer completes
        producer.finish()
        data = resp.body.read_nowait() or b""
        total = len(data)
        while chunk := await resp.body.read():
            total += len(chunk)
        assert total == 64 * 65536
        pool.close()


async def test_cancelling_a_call_resets_the_stream_and_the_server_task() -> None:
    app = App()
    async with h2_server(app) as (port, _):
        pool = pool_for(port)
        conn, _ = await pool.acquire()
        task = asyncio.create_task(conn.send(request(b"/wait")))
        while not app.requests:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(100):
            if app.cancelled:
                break
            await asyncio.sleep(0.01)
        assert app.cancelled == 1
        # the connection still serves other calls
        resp = await conn.send(request(b"/other"))
        assert resp.status == 200 and dict(resp.headers)[b"x-path"] == b"/other"
        pool.close()


async def test_deadline_resets_only_that_stream() -> None:
    app = App()
    async with h2_server(app) as (port, _):
        pool = pool_for(port)
        conn, _ = await pool.acquire()
        req = request(b"/wait")
        req.deadline = asyncio.get_running_loop().time() + 0.1
        from gossamer.errors import UpstreamTimeout

        with pytest.raises(UpstreamTimeout):
            await conn.send(req)
        resp = await conn.send(request(b"/x"))
        assert resp.status == 200
        pool.close()


async def test_goaway_lets_open_streams_finish_and_refuses_new_ones() -> None:
    app = App()
    async with h2_server(app) as (port, tracker):
        pool = pool_for(port)
        conn, _ = await pool.acquire()
        pending = asyncio.create_task(conn.send(request(b"/wait")))
        while not app.requests:
            await asyncio.sleep(0.01)
        drained = asyncio.create_task(tracker.drain(5.0))  # the server sends GOAWAY
        for _ in range(100):
            if conn.goaway:
                break
            await asyncio.sleep(0.01)
        assert conn.goaway and not conn.usable
        with pytest.raises(StreamRefused):
            await conn.send(request(b"/late"))
        app.release.set()
        resp = await pending  # the stream open before the GOAWAY finished
        assert resp.status == 200 and await read_all(resp.body) == b"released"
        assert await drained == 0  # and nothing had to be aborted
        # a new call goes to a new connection
        assert conn not in pool.conns


async def test_upstream_reset_mid_body_fails_the_body() -> None:
    app = App()
    async with h2_server(app) as (port, _):
        pool = pool_for(port)
        conn, _ = await pool.acquire()
        resp = await conn.send(request(b"/firehose"))
        assert app.producer is not None
        app.producer.feed(b"some")
        app.producer.fail(ConnectionResetError("upstream app died"))
        with pytest.raises(UpstreamReset):
            await read_all(resp.body)
        pool.close()


async def test_http1_listener_hands_the_h2c_preface_over() -> None:
    app = App()
    tracker = ConnectionTracker()
    loop = asyncio.get_running_loop()
    info = ConnectionInfo("outbound")

    def handover(transport: object, received: bytes) -> None:
        server = H2Server(app, info, tracker)
        transport.set_protocol(server)  # type: ignore[attr-defined]
        server.connection_made(transport)  # type: ignore[arg-type]
        server.data_received(received)

    def factory() -> Http1Server:
        server = Http1Server(app, info, tracker)
        server.h2_handover = handover
        return server

    srv = await loop.create_server(factory, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        # HTTP/1.1 still works on that listener
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /h1 HTTP/1.1\r\nhost: svc\r\n\r\n")
        assert (await reader.readline()).startswith(b"HTTP/1.1 200")
        writer.close()
        # and an h2c client with prior knowledge is served over HTTP/2
        pool = pool_for(port)
        conn, _ = await pool.acquire()
        resp = await conn.send(request(b"/h2"))
        assert resp.status == 200 and dict(resp.headers)[b"x-path"] == b"/h2"
        assert app.requests[-1].path == b"/h2" and app.requests[-1].grpc == 1
        pool.close()
    finally:
        tracker.stop()
        srv.close()


async def test_grpc_timeout_sent_upstream_is_the_time_left() -> None:
    from gossamer.proxy.transport.h2 import grpc

    app = App()
    async with h2_server(app) as (port, _):
        pool = pool_for(port)
        conn, _ = await pool.acquire()
        req = request(b"/x")
        req.headers.append((b"grpc-timeout", b"5S"))  # what the client asked for...
        req.grpc = 2
        req.deadline = asyncio.get_running_loop().time() + 1.0  # ...minus what elapsed
        await conn.send(req)
        seen = app.requests[-1]
        sent = grpc.parse_timeout(dict(seen.headers)[b"grpc-timeout"])
        assert sent is not None and 0.9 < sent <= 1.0
        assert seen.grpc == 2 and seen.deadline - seen.start == pytest.approx(sent)
        pool.close()


async def test_idle_connections_expire_and_a_closed_pool_says_goaway() -> None:
    app = App()
    now = [1000.0]
    async with h2_server(app) as (port, tracker):
        pool = pool_for(port)
        pool.clock = lambda: now[0]
        conn, _ = await pool.acquire()
        await conn.send(request(b"/a"))
        for _ in range(100):  # the stream ends when the response's END_STREAM arrives
            if not conn.streams:
                break
            await asyncio.sleep(0.01)
        pool.expire()
        assert not conn.closed  # idle for no time yet
        now[0] += pool.idle_timeout + 1
        pool.expire()
        assert conn.goaway and conn.closed
        # a closed pool: the busy connection gets GOAWAY, finishes its stream, closes
        conn2, reused = await pool.acquire()
        assert not reused and conn2 is not conn
        pending = asyncio.create_task(conn2.send(request(b"/wait")))
        while len(app.requests) < 2:
            await asyncio.sleep(0.01)
        (server,) = tracker.live
        assert isinstance(server, H2Server)
        pool.close()
        assert conn2.goaway and not conn2.closed
        for _ in range(100):  # the server takes the client's GOAWAY as a drain
            if server.goaway:
                break
            await asyncio.sleep(0.01)
        assert server.goaway and not server.closed and server.active == 1
        app.release.set()
        resp = await pending
        assert await read_all(resp.body) == b"released"
        for _ in range(100):
            if conn2.closed and server.closed:
                break
            await asyncio.sleep(0.01)
        assert conn2.closed and server.closed and not tracker.live


async def test_a_refused_stream_goes_to_another_endpoint() -> None:
    """A draining upstream refuses new streams (REFUSED_STREAM): the call, though a
    POST, is sent once more to another endpoint, as nothing was processed."""
    import random

    from gossamer.proxy.config import Cluster, Endpoint, OutlierDetection, Protocol
    from gossamer.proxy.upstream.balancer import Host, RoundRobin
    from gossamer.proxy.upstream.dispatch import endpoint_service
    from gossamer.proxy.upstream.runtime import ClusterRuntime

    refusing, serving = App(), App()
    tracker = ConnectionTracker()
    loop = asyncio.get_running_loop()

    def draining_server() -> H2Server:
        server = H2Server(refusing, ConnectionInfo("inbound"), tracker)
        server.goaway = True  # refuses every stream it is offered
        return server

    srv_a = await loop.create_server(draining_server, "127.0.0.1", 0)
    async with h2_server(serving) as (port_b, _):
        port_a = srv_a.sockets[0].getsockname()[1]
        hosts = [Host(Endpoint("127.0.0.1", port_a)), Host(Endpoint("127.0.0.1", port_b))]
        config = Cluster(
            "c", "greeter", 80, tls=False, protocol=Protocol.GRPC,
            outlier=OutlierDetection(consecutive_failures=0),
        )  # fmt: skip
        rng = random.Random(1)
        cluster = ClusterRuntime(
            config,
            hosts,
            RoundRobin(hosts, rng, time.monotonic),
            {h.endpoint.key: pool_for(h.endpoint.port) for h in hosts},
            time.monotonic,
        )
        service = endpoint_service(time.monotonic)
        tried = []
        for i in range(4):
            req = request(b"/call-%d" % i, b"payload")
            req.cluster = cluster
            resp = await service(req)
            assert resp.status == 200
            tried.append(len(req.tried))
        assert not refusing.requests and len(serving.requests) == 4
        assert 2 in tried  # some calls went to the refusing endpoint first
        for pool in cluster.pools.values():
            pool.close()
    srv_a.close()
    tracker.stop()
