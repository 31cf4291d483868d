"""Message bodies between a protocol (producer) and a coroutine (consumer).

`BodyStream` queues the chunks a parser delivers and pauses the producing transport
when more than `high` bytes wait (flow control: a slow reader never makes the proxy
buffer a whole large body); reading below that resumes it.

`RequestBody` adds replay for retries (as linkerd's ReplayBody): what a try reads is
also recorded while the total stays within `limit`, so a later try can read it again
from the start, then continue from the stream. Once more than `limit` bytes were read,
the body is no longer replayable and a failed try is not retried.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any


class BodyStream:
    __slots__ = ("_chunks", "_done", "_error", "_paused", "_size", "_transport", "_waiter", "high")

    def __init__(self, transport: Any = None, high: int = 262144) -> None:
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._done = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._transport = transport
        self._paused = False
        self.high = high

    # -- producer --------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._size += len(data)
        w = self._waiter
        if w is not None:
            self._waiter = None
            if not w.done():
                w.set_result(None)
        if self._size > self.high and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()

    def finish(self) -> None:
        self._done = True
        self._wake()

    def fail(self, exc: BaseException) -> None:
        if not self._done:
            self._error = exc
            self._done = True
            self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None:
            self._waiter = None
            if not w.done():
                w.set_result(None)

    # -- consumer --------------------------------------------------------------
    @property
    def done(self) -> bool:
        """No more data will arrive (what is queued may still be read)."""
        return self._done

    @property
    def complete(self) -> bool:
        """Finished without error and fully read."""
        return self._done and self._error is None and not self._chunks

    def read_nowait(self) -> bytes | None:
        """Queued data, b"" at the end, or None when the caller must wait."""
        chunks = self._chunks
        if chunks:
            data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
            chunks.clear()
            self._size = 0
            if self._paused:
                self._paused = False
                self._transport.resume_reading()
            return data
        if self._done:
            if self._error is not None:
                raise self._error
            return b""
        return None

    def abort_producer(self) -> None:
        """The reader gave up: drop what is queued and abort the producing transport."""
        self._chunks.clear()
        self._size = 0
        if not self._done:
            self.fail(ConnectionAbortedError("body discarded"))
            if self._transport is not None:
                self._transport.abort()

    def resume_producer(self) -> None:
        """Drop what is queued and let the producer read again (body not needed)."""
        self._chunks.clear()
        self._size = 0
        if self._paused:
            self._paused = False
            self._transport.resume_reading()

    async def read(self) -> bytes:
        while True:
            data = self.read_nowait()
            if data is not None:
                return data
            waiter = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            await waiter


class RequestBody:
    """A request body that can be replayed while it fits in `limit` bytes."""

    __slots__ = (
        "_generation",
        "_recorded",
        "_recorded_size",
        "consumed",
        "content_length",
        "limit",
        "stream",
    )

    def __init__(
        self, stream: BodyStream, limit: int = 65536, content_length: int | None = None
    ) -> None:
        self.stream = stream
        self.content_length = content_length  # None: chunked
        self.limit = limit
        self._recorded: list[bytes] = []
        self._recorded_size = 0
        self._generation = 0
        self.consumed = False  # read past the replay buffer

    @property
    def replayable(self) -> bool:
        return not self.consumed

    def reader(self) -> BodyReader:
        """A reader from the start; earlier readers stop working."""
        if self.consumed:
            raise RuntimeError("the request body was streamed and can no longer be replayed")
        self._generation += 1
        return BodyReader(self, self._generation)

    def _record(self, data: bytes) -> None:
        if not data or self.consumed:
            return
        self._recorded_size += len(data)
        if self._recorded_size > self.limit:
            self.consumed = True
            self._recorded.clear()
        else:
            self._recorded.append(data)


class BodyReader:
    __slots__ = ("_body", "_generation", "_index")

    def __init__(self, body: RequestBody, generation: int) -> None:
        self._body = body
        self._generation = generation
        self._index = 0

    def _check(self) -> RequestBody:
        body = self._body
        if body._generation != self._generation:
            raise RuntimeError("a newer try is reading this request body")
        return body

    def read_all_nowait(self) -> bytes | None:
        """The whole rest of the body if it has fully arrived, else None (no change)."""
        body = self._check()
        if not body.stream.done or body.stream._error is not None:
            return None
        parts = body._recorded[self._index :]
        rest = body.stream.read_nowait()
        if rest:
            body._record(rest)
            parts.append(rest)
        self._index = len(body._recorded)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def read(self) -> bytes:
        body = self._check()
        if self._index < len(body._recorded):
            data = body._recorded[self._index]
            self._index += 1
            return data
        data = await body.stream.read()
        self._check()
        body._record(data)
        self._index = len(body._recorded)
        return data
