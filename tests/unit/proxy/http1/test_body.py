"""Body streams: flow control and replay for retries."""

from __future__ import annotations

import asyncio

import pytest

from gossamer.proxy.transport.http1.body import BodyStream, RequestBody


class FakeTransport:
    def __init__(self) -> None:
        self.paused = False
        self.aborted = False

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def abort(self) -> None:
        self.aborted = True


async def test_stream_pauses_the_producer_above_high_water_and_resumes():
    t = FakeTransport()
    s = BodyStream(t, high=10)
    s.feed(b"x" * 8)
    assert not t.paused
    s.feed(b"y" * 8)
    assert t.paused
    assert await s.read() == b"x" * 8 + b"y" * 8
    assert not t.paused
    s.finish()
    assert await s.read() == b""
    assert s.complete


async def test_reader_waits_for_data_and_sees_errors():
    s = BodyStream()
    task = asyncio.ensure_future(s.read())
    await asyncio.sleep(0)
    assert not task.done()
    s.feed(b"abc")
    assert await task == b"abc"
    s.fail(ConnectionResetError("gone"))
    with pytest.raises(ConnectionResetError):
        await s.read()


async def test_abort_producer_aborts_an_unfinished_body():
    t = FakeTransport()
    s = BodyStream(t)
    s.feed(b"abc")
    s.abort_producer()
    assert t.aborted
    done = BodyStream(FakeTransport())
    done.finish()
    done.abort_producer()
    assert not done._transport.aborted


async def test_replay_within_the_limit():
    s = BodyStream()
    body = RequestBody(s, limit=10)
    first = body.reader()
    s.feed(b"abc")
    assert await first.read() == b"abc"
    s.feed(b"def")
    s.finish()
    assert await first.read() == b"def"
    assert body.replayable
    second = body.reader()
    assert await second.read() == b"abc"
    assert await second.read() == b"def"
    assert await second.read() == b""
    with pytest.raises(RuntimeError):
        await first.read()  # an older try can no longer read


async def test_streamed_past_the_limit_is_not_replayable():
    s = BodyStream()
    body = RequestBody(s, limit=4)
    r = body.reader()
    s.feed(b"abcdef")
    assert await r.read() == b"abcdef"
    assert not body.replayable
    with pytest.raises(RuntimeError):
        body.reader()


async def test_read_all_nowait_only_when_complete():
    s = BodyStream()
    body = RequestBody(s)
    r = body.reader()
    s.feed(b"ab")
    assert r.read_all_nowait() is None
    s.feed(b"cd")
    s.finish()
    assert r.read_all_nowait() == b"abcd"
    assert body.reader().read_all_nowait() == b"abcd"  # recorded for a retry
