"""An in-memory asyncio transport and a loop driver, so protocol objects run on fuzz
bytes with no sockets: each input is one connection, fed and drained on one event loop
that lives for the whole run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fuzz.harness import FuzzBug

MAX_TURNS = 2000  # loop turns per input before it counts as a livelock

P = TypeVar("P", bound=asyncio.Protocol)


class MemoryTransport(asyncio.Transport):
    """What the protocol writes is kept (and handed to `on_write`); closing schedules
    `connection_lost` once, as asyncio's transports do."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        protocol: asyncio.BaseProtocol,
        on_write: Callable[[bytes], None] | None = None,
    ) -> None:
        super().__init__()
        self.loop = loop
        self.protocol = protocol
        self.on_write = on_write
        self.written = bytearray()
        self.closing = False
        self.lost = False
        self.reading = True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.closing:
            return
        chunk = bytes(data)
        self.written += chunk
        if self.on_write is not None:
            self.on_write(chunk)

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            self.loop.call_soon(self.lose)

    def abort(self) -> None:
        self.close()

    def lose(self, exc: Exception | None = None) -> None:
        """The connection ends (once)."""
        self.closing = True
        if not self.lost:
            self.lost = True
            self.protocol.connection_lost(exc)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self.protocol

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 15001)}.get(
            name, default
        )

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass


class Driver:
    """One event loop for a whole fuzz run; exceptions that asyncio would only log
    (a callback or a task that failed with nobody awaiting it) become FuzzBug."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.errors: list[dict[str, Any]] = []
        self.loop.set_exception_handler(lambda _loop, context: self.errors.append(context))

    def settle(self, coro: Any = None) -> None:
        """Run `coro` (if any), then turn the loop until nothing is ready to run."""
        loop = self.loop
        if coro is not None:
            loop.run_until_complete(coro)
        ready = getattr(loop, "_ready", None)  # asyncio's run queue (not uvloop's)
        for _ in range(MAX_TURNS):
            loop.run_until_complete(asyncio.sleep(0))
            if ready is not None and not ready:
                break
        else:
            raise FuzzBug(f"still busy after {MAX_TURNS} loop turns")

    def finish(self) -> None:
        """Cancel what the input left waiting (the next input starts clean), then fail
        on any error the loop reported."""
        loop = self.loop
        tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self.settle()
        if self.errors:
            context, self.errors = self.errors[0], []
            exc = context.get("exception")
            raise FuzzBug(f"event loop error: {context.get('message')}: {exc!r}") from exc

    def connect(self, build: Callable[[], Awaitable[P]]) -> tuple[P, MemoryTransport]:
        """The protocol `build` makes on the loop (a protocol takes the running loop),
        connected to a new `MemoryTransport`."""
        protocol = self.loop.run_until_complete(build())
        transport = MemoryTransport(self.loop, protocol)
        protocol.connection_made(transport)
        return protocol, transport

    def feed(
        self, protocol: asyncio.Protocol, transport: MemoryTransport, data: bytes, step: int
    ) -> None:
        """Hand `data` to the protocol in slices of `step` bytes, the loop settled after
        each, until the transport closes; then settle once more."""
        for start in range(0, len(data), step):
            if transport.closing:
                break
            protocol.data_received(data[start : start + step])
            self.settle()
        self.settle()


_drivers: dict[str, Driver] = {}


def target_driver(target: str) -> Driver:
    """The driver of one fuzz target (`__name__`): made at its first input, kept for
    the run."""
    driver = _drivers.get(target)
    if driver is None:
        driver = _drivers[target] = Driver()
    return driver
