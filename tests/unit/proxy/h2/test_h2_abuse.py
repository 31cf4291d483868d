"""Abusive HTTP/2 clients (issue 17, finding 3): the pure budgets of `abuse.py`, then an
`H2Server` on a loopback socket fed raw frames — rapid reset, streams over the limit,
PING and empty-DATA floods, a CONTINUATION flood — answered with GOAWAY(ENHANCE_YOUR_CALM)
or REFUSED_STREAM, and no task left behind by streams reset before they started."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator
from typing import TypeVar

import h2.config
import h2.connection
import h2.errors
import h2.events
import pytest

from gossamer.proxy.service import Request, Response
from gossamer.proxy.transport.h2.abuse import (
    FRAME_FLOOD,
    PREMATURE_RESETS,
    RESET_FLOOD,
    AbuseGuard,
    H2Limits,
    LogThrottle,
    TokenBucket,
)
from gossamer.proxy.transport.h2.server import H2Server
from gossamer.proxy.transport.http1.conns import ConnectionInfo, ConnectionTracker

E = TypeVar("E", bound=h2.events.Event)
CALM = h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
REQUEST = [(":method", "GET"), (":scheme", "http"), (":path", "/wait"), (":authority", "a")]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# -- the pure budgets ----------------------------------------------------------------------
def test_premature_resets_trip_at_half_of_the_first_500_streams() -> None:
    guard = AbuseGuard(H2Limits(), Clock())
    for _ in range(249):
        assert guard.stream_closed(True) is None
    assert guard.stream_closed(True) == PREMATURE_RESETS


def test_a_client_that_cancels_some_calls_is_left_alone() -> None:
    guard = AbuseGuard(H2Limits(), Clock())
    for i in range(100_000):
        assert guard.stream_closed(i % 5 < 2) is None  # 40 % cancelled


def test_after_many_good_streams_the_ratio_decides() -> None:
    guard = AbuseGuard(H2Limits(), Clock())
    for _ in range(1000):
        guard.stream_closed(False)
    tripped = next(i for i in range(1, 5000) if guard.stream_closed(True))
    assert tripped == 1000  # 1000 premature of 2000 closed: 50 %


def test_only_young_streams_are_premature() -> None:
    guard = AbuseGuard(H2Limits(premature_reset_lifetime=1.0), Clock())
    assert guard.is_premature(0.2)
    assert not guard.is_premature(1.5)


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(3, 2.0, clock)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    clock.now += 1.0  # two tokens back
    assert [bucket.take() for _ in range(3)] == [True, True, False]
    clock.now += 60.0  # never more than the burst
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]


def test_reset_and_frame_floods_have_their_own_buckets() -> None:
    clock = Clock()
    guard = AbuseGuard(
        H2Limits(reset_burst=5, reset_rate=1.0, flood_burst=2, flood_rate=0.0), clock
    )
    assert [guard.reset_received() for _ in range(6)] == [None] * 5 + [RESET_FLOOD]
    clock.now += 2.0
    assert guard.reset_received() is None
    assert [guard.flood_frame() for _ in range(3)] == [None, None, FRAME_FLOOD]


def test_log_throttle_counts_what_it_kept_quiet() -> None:
    throttle = LogThrottle(1.0)
    assert throttle.allow(10.0) == 0
    assert throttle.allow(10.5) is None
    assert throttle.allow(10.9) is None
    assert throttle.allow(11.0) == 2


# -- an H2Server fed raw frames ------------------------------------------------------------
class Waiting:
    """A service that never answers until cancelled."""

    def __init__(self) -> None:
        self.started = 0

    async def __call__(self, req: Request) -> Response:
        self.started += 1
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


class Peer:
    """A raw HTTP/2 client: the h2 package for frames, the socket for the rest."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.h2.initiate_connection()
        self.events: list[h2.events.Event] = []

    def send(self, raw: bytes = b"") -> None:
        self.writer.write(self.h2.data_to_send() + raw)

    async def until(self, kind: type[E], timeout: float = 5.0) -> E:
        """Read until an event of `kind` arrives (AssertionError at EOF)."""
        async with asyncio.timeout(timeout):
            while True:
                for event in self.events:
                    if isinstance(event, kind):
                        self.events.remove(event)
                        return event
                data = await self.reader.read(65536)
                assert data, f"connection closed before {kind.__name__}: {self.events}"
                with contextlib.suppress(h2.exceptions.ProtocolError):
                    self.events.extend(self.h2.receive_data(data))

    async def closed(self) -> bool:
        async with asyncio.timeout(5.0):
            while await self.reader.read(65536):
                pass
        return True


@contextlib.asynccontextmanager
async def serve(
    limits: H2Limits, service: Waiting | None = None
) -> AsyncIterator[tuple[Peer, list[H2Server], list[tuple[str, str]]]]:
    tracker = ConnectionTracker()
    servers: list[H2Server] = []
    abuses: list[tuple[str, str]] = []

    def factory() -> H2Server:
        server = H2Server(
            service or Waiting(),
            ConnectionInfo("inbound", "127.0.0.1"),
            tracker,
            h2_limits=limits,
            on_abuse=lambda *labels: abuses.append(labels),
        )
        servers.append(server)
        return server

    srv = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection(*srv.sockets[0].getsockname()[:2])
    peer = Peer(reader, writer)
    peer.send()
    try:
        yield peer, servers, abuses
    finally:
        writer.close()
        tracker.stop()
        srv.close()


async def test_rapid_reset_gets_goaway_enhance_your_calm() -> None:
    async with serve(H2Limits()) as (peer, servers, abuses):
        for i in range(300):
            sid = 2 * i + 1
            peer.h2.send_headers(sid, REQUEST, end_stream=True)
            peer.h2.reset_stream(sid)
        peer.send()
        goaway = await peer.until(h2.events.ConnectionTerminated)
        assert goaway.error_code == CALM
        assert await peer.closed()
        assert abuses == [("inbound", PREMATURE_RESETS)]
        assert not servers[0]._tasks and not servers[0]._starts


async def test_streams_reset_before_they_started_leave_no_task() -> None:
    service = Waiting()
    async with serve(H2Limits(), service) as (peer, servers, abuses):
        for i in range(100):
            sid = 2 * i + 1
            peer.h2.send_headers(sid, REQUEST, end_stream=True)
            peer.h2.reset_stream(sid)
        peer.h2.ping(b"12345678")
        peer.send()
        await peer.until(h2.events.PingAckReceived)
        await asyncio.sleep(0.05)
        server = servers[0]
        assert not server._tasks and not server._starts and not abuses
        assert (server.guard.closed, server.guard.premature) == (100, 100)


async def test_streams_over_the_limit_are_refused() -> None:
    async with serve(H2Limits(max_concurrent_streams=2)) as (peer, servers, abuses):
        for sid in (1, 3, 5):
            peer.h2.send_headers(sid, REQUEST, end_stream=True)
        peer.send()
        reset = await peer.until(h2.events.StreamReset)
        assert (reset.stream_id, reset.error_code) == (5, h2.errors.ErrorCodes.REFUSED_STREAM)
        assert sorted(servers[0]._tasks) == [1, 3]
        assert not abuses


async def test_streams_refused_again_and_again_close_the_connection() -> None:
    limits = H2Limits(max_concurrent_streams=1, premature_reset_min_streams=20)
    async with serve(limits) as (peer, _, abuses):
        # the h2 client keeps to the server's limit, the raw frames do not
        peer.h2.send_headers(1, REQUEST, end_stream=True)
        peer.send()
        block = h2.connection.H2Connection().encoder.encode(REQUEST)
        raw = b"".join(frame(0x1, 0x5, sid, block) for sid in range(3, 60, 2))
        peer.send(raw)
        goaway = await peer.until(h2.events.ConnectionTerminated)
        assert goaway.error_code == CALM
        assert abuses == [("inbound", PREMATURE_RESETS)]


@pytest.mark.parametrize("kind", ["ping", "empty-data", "settings"])
async def test_frame_floods_get_goaway(kind: str) -> None:
    async with serve(H2Limits(flood_burst=50, flood_rate=0.0)) as (peer, _, abuses):
        if kind == "empty-data":
            peer.h2.send_headers(1, REQUEST)
        for i in range(60):
            if kind == "ping":
                peer.h2.ping(b"%08d" % i)
            elif kind == "settings":
                peer.h2.update_settings({h2.settings.SettingCodes.ENABLE_PUSH: 0})
            else:
                peer.h2.send_data(1, b"")
        peer.send()
        goaway = await peer.until(h2.events.ConnectionTerminated)
        assert goaway.error_code == CALM
        assert abuses == [("inbound", FRAME_FLOOD)]


def frame(kind: int, flags: int, sid: int, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes((kind, flags))
        + struct.pack(">I", sid)
        + payload
    )


async def test_a_continuation_flood_closes_the_connection() -> None:
    """CVE-2024-27316: header blocks in endless CONTINUATION frames; the h2 package
    refuses more than 64 of them with a connection error."""
    async with serve(H2Limits()) as (peer, servers, _):
        raw = frame(0x1, 0x1, 1, b"") + b"".join(frame(0x9, 0, 1, b"\x40") for _ in range(200))
        peer.send(raw)
        assert await peer.closed()
        assert servers[0].closed
