"""The sidecar's Tap stream (proxy/agent/tap_stream.py) against a scripted stream: hello,
open -> the tap is active and batches are sent, a lost stream closes every tap and the
stream is opened again."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

from gossamer.contract import mesh_pb2
from gossamer.contract.rpc import TAP_WATCH
from gossamer.proxy.agent.tap_stream import GOOD_SESSION, TapStream
from gossamer.proxy.telemetry.tap import Tap


class FakeStream:
    def __init__(self) -> None:
        self.sent: list[mesh_pb2.TapReport] = []
        self.incoming: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.cancelled = False

    async def send(self, data: bytes, end: bool = False) -> None:
        self.sent.append(mesh_pb2.TapReport.FromString(data))

    async def recv(self) -> bytes | None:
        return await self.incoming.get()

    def cancel(self) -> None:
        self.cancelled = True


class FakeChannel:
    target = "cp:15012"

    def __init__(self) -> None:
        self.streams: list[FakeStream] = []

    async def stream(self, path: str) -> FakeStream:
        assert path == TAP_WATCH
        self.streams.append(FakeStream())
        return self.streams[-1]


class FakeChannels:
    def __init__(self) -> None:
        self.channel = FakeChannel()
        self.failures: list[str] = []

    def acquire(self) -> FakeChannel:
        return self.channel

    async def release(self, channel: FakeChannel) -> None:
        pass

    def failed(self, channel: FakeChannel, status: str) -> bool:
        self.failures.append(status)
        return False

    def succeeded(self, channel: FakeChannel) -> None:
        pass

    def retry_delay(self, attempt: int, rng: random.Random, cap: float) -> float:
        return 0.01


async def until(check: Callable[[], object], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


def open_command(tap_id: str) -> bytes:
    return mesh_pb2.TapCommand(open=mesh_pb2.TapOpen(id=tap_id, rate=50)).SerializeToString()


async def test_open_send_lose_and_reconnect() -> None:
    channels = FakeChannels()
    tap = Tap()
    client = TapStream(channels, tap, "web-1")  # type: ignore[arg-type]
    task = asyncio.create_task(client.run())
    try:
        await until(lambda: len(channels.channel.streams) == 1 and channels.channel.streams[0].sent)
        first = channels.channel.streams[0]
        assert first.sent[0].instance_id == "web-1" and not first.sent[0].tap_id
        assert not tap.active
        await first.incoming.put(open_command("t1"))
        await until(lambda: tap.active)
        assert tap.taps["t1"].bucket.rate == 50
        tap.offer("inbound", "a", "b", "web", "GET", "web", b"/x?y", 200, 0.01, 3, [])
        await until(lambda: len(first.sent) >= 2)
        report = first.sent[1]
        assert report.tap_id == "t1" and [r.path for r in report.records] == ["/x"]
        await first.incoming.put(None)  # the control plane ended the stream
        await until(lambda: len(channels.channel.streams) == 2)
        assert not tap.active and tap.taps == {} and first.cancelled
        assert channels.failures == []  # the tap stream never moves the sidecar
        second = channels.channel.streams[1]
        await until(lambda: bool(second.sent))
        await second.incoming.put(open_command("t2"))
        await until(lambda: tap.active)
        await second.incoming.put(mesh_pb2.TapCommand(close="t2").SerializeToString())
        await until(lambda: not tap.active)
        assert client.sessions == 2
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_move_reopens_on_the_new_replica() -> None:
    channels = FakeChannels()
    tap = Tap()
    client = TapStream(channels, tap, "web-1")  # type: ignore[arg-type]
    task = asyncio.create_task(client.run())
    try:
        await until(lambda: len(channels.channel.streams) == 1 and client.connected)
        await channels.channel.streams[0].incoming.put(open_command("t1"))
        await until(lambda: tap.active)
        client.move()
        await until(lambda: len(channels.channel.streams) == 2)
        assert not tap.active  # that replica's taps ended with its stream
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_bad_message_is_retried_not_the_end_of_the_task() -> None:
    channels = FakeChannels()
    tap = Tap()
    client = TapStream(channels, tap, "web-1", max_backoff=0.05)  # type: ignore[arg-type]
    task = asyncio.create_task(client.run())
    try:
        await until(lambda: len(channels.channel.streams) == 1 and client.connected)
        await channels.channel.streams[0].incoming.put(b"\xff\xff\xff\xff")  # does not decode
        await until(lambda: len(channels.channel.streams) == 2)
        assert not task.done()
        second = channels.channel.streams[1]
        await until(lambda: client.connected)
        await second.incoming.put(open_command("t1"))
        await until(lambda: tap.active)  # still tappable
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_the_back_off_starts_again_after_a_long_session() -> None:
    client = TapStream(FakeChannels(), Tap(), "web-1")  # type: ignore[arg-type]
    now = time.monotonic()
    assert client._next(6, now) == 7  # never connected: the next step
    client.connected = True
    assert client._next(6, now) == 7  # connected but failed at once: still a run of failures
    assert client._next(6, now - GOOD_SESSION - 1) == 1  # a long good session: from the start
