"""The HTTP/2 pool within the cluster's circuit breaker, against real H2Servers on
loopback: max_connections bounds the connections streams are multiplexed on, requests
wait as pending requests when every connection is full (overflowing past
max_pending_requests), a connection draining after GOAWAY keeps its unit until it has
closed, and a pending request for one endpoint reclaims an idle connection of another."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

import h2.settings
import pytest

from gossamer.proxy.config import BreakerLimits
from gossamer.proxy.service import Overflow, Request, Response
from gossamer.proxy.transport.h2.client import H2Client
from gossamer.proxy.transport.h2.conn import MAX_HEADER_LIST, STREAM_WINDOW, H2Body
from gossamer.proxy.transport.h2.pool import H2Pool
from gossamer.proxy.transport.h2.server import H2Server
from gossamer.proxy.transport.http1.conns import ConnectionInfo, ConnectionTracker
from gossamer.proxy.upstream.breaker import PENDING, CircuitBreaker


class App:
    """`/wait` answers when `release` is set; anything else at once."""

    def __init__(self) -> None:
        self.started: list[bytes] = []
        self.release = asyncio.Event()

    async def __call__(self, req: Request) -> Response:
        self.started.append(req.path)
        if req.path.startswith(b"/wait"):
            await self.release.wait()
        return Response(200, [], b"done " + req.path)


@contextlib.asynccontextmanager
async def h2_server(
    app: App, max_streams: int = 1000
) -> AsyncIterator[tuple[int, ConnectionTracker]]:
    """An H2Server advertising `max_streams` concurrent streams."""
    tracker = ConnectionTracker()

    def factory() -> H2Server:
        server = H2Server(app, ConnectionInfo("inbound"), tracker)
        server.h2.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: max_streams,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST,
            },
        )
        return server

    srv = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)
    try:
        yield srv.sockets[0].getsockname()[1], tracker
    finally:
        tracker.stop()
        srv.close()


def pool_for(port: int, breaker: CircuitBreaker) -> H2Pool:
    async def connect(conn: H2Client, allowed: float) -> object:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_connection(lambda: conn, "127.0.0.1", port)
        return transport

    return H2Pool(connect, clock=time.monotonic, breaker=breaker)


def breaker(**limits: int) -> tuple[CircuitBreaker, list[str]]:
    seen: list[str] = []
    return CircuitBreaker("c", BreakerLimits(**limits), seen.append), seen


def request(path: bytes) -> Request:
    return Request("POST", path, "svc:80", [(b"content-type", b"application/grpc")], None)


async def call(pool: H2Pool, path: bytes) -> bytes:
    conn, _ = await pool.acquire(asyncio.get_running_loop().time() + 5)
    resp = await conn.send(request(path))
    assert resp.status == 200 and isinstance(resp.body, H2Body)
    data = b""
    while chunk := await resp.body.read():
        data += chunk
    return data


async def until(check: Callable[[], bool], what: str) -> None:
    for _ in range(300):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def test_one_connection_full_then_pending_then_overflow() -> None:
    """max_connections 1 to an upstream that takes one stream at a time: the second
    call waits for the first one's stream, the third overflows at once."""
    app = App()
    b, seen = breaker(max_connections=1, max_pending_requests=1)
    async with h2_server(app, max_streams=1) as (port, _):
        pool = pool_for(port, b)
        first = asyncio.create_task(call(pool, b"/wait-1"))
        await until(lambda: app.started == [b"/wait-1"], "the first call")
        (conn,) = pool.conns
        await until(lambda: conn.h2.remote_settings.max_concurrent_streams == 1, "SETTINGS")
        assert not conn.usable and b.connections == 1
        second = asyncio.create_task(call(pool, b"/wait-2"))
        await until(lambda: b.pending == 1, "a pending request")
        with pytest.raises(Overflow, match="max_pending_requests"):
            await pool.acquire(asyncio.get_running_loop().time() + 5)
        assert seen == [PENDING] and b.pending == 1
        app.release.set()
        assert await first == b"done /wait-1"
        assert await second == b"done /wait-2"  # on the same connection, after the first
        assert pool.connects_total == 1 and pool.conns == [conn] and b.pending == 0
        pool.close()
        await until(lambda: b.connections == 0 and pool.open == 0, "the unit back")


async def test_without_a_unit_limit_a_full_connection_makes_another() -> None:
    app = App()
    b, _ = breaker(max_connections=2)
    async with h2_server(app, max_streams=1) as (port, _):
        pool = pool_for(port, b)
        first = asyncio.create_task(call(pool, b"/wait-1"))
        await until(lambda: len(app.started) == 1, "the first call")
        (conn,) = pool.conns
        await until(lambda: not conn.usable, "SETTINGS")
        second = asyncio.create_task(call(pool, b"/wait-2"))
        await until(lambda: len(app.started) == 2, "the second call")
        assert pool.connects_total == 2 and b.connections == 2
        app.release.set()
        await asyncio.gather(first, second)
        pool.close()
        await until(lambda: b.connections == 0, "the units back")


async def test_a_draining_connection_keeps_its_unit_until_it_closes() -> None:
    app = App()
    b, _ = breaker(max_connections=1)
    async with h2_server(app) as (port, tracker):
        pool = pool_for(port, b)
        first = asyncio.create_task(call(pool, b"/wait-1"))
        await until(lambda: len(app.started) == 1, "the first call")
        (conn,) = pool.conns
        (server,) = tracker.live
        server.shutdown()  # the upstream sends GOAWAY; its open stream goes on
        await until(lambda: conn.goaway, "GOAWAY")
        assert pool.conns == [] and not conn.closed and b.connections == 1
        # a new call has no connection with room and no unit: it waits
        second = asyncio.create_task(call(pool, b"/after"))
        await until(lambda: b.pending == 1, "a pending request")
        assert pool.connects_total == 1 and not second.done()
        app.release.set()
        assert await first == b"done /wait-1"
        # the draining connection closed; its unit went to the pending request
        assert await second == b"done /after"
        assert conn.closed and pool.connects_total == 2 and b.pending == 0
        assert b.connections == 1 and pool.open == 1
        pool.close()
        await until(lambda: b.connections == 0, "the unit back")


async def test_a_pending_request_reclaims_an_idle_connection_of_another_endpoint() -> None:
    app_a, app_b = App(), App()
    b, seen = breaker(max_connections=1, max_pending_requests=1)
    async with h2_server(app_a) as (port_a, _), h2_server(app_b) as (port_b, _):
        a, other = pool_for(port_a, b), pool_for(port_b, b)
        b.reclaim = a.close_idle
        assert await call(a, b"/x") == b"done /x"
        (idle,) = a.conns
        await until(lambda: not idle.streams, "the stream to end")
        assert b.connections == 1 and a.idle_count == 1
        assert await asyncio.wait_for(call(other, b"/y"), 3) == b"done /y"
        assert idle.closed and a.open == 0 and other.open == 1
        assert b.connections == 1 and b.pending == 0 and seen == []
        other.close()
        await until(lambda: b.connections == 0, "the unit back")
