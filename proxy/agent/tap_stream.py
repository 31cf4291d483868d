"""The sidecar's Tap stream: taps opened by the control plane, records sent back.

The agent keeps one `Tap/Watch` stream (mesh.proto) open on the current control-plane
replica's mutual-TLS channel (channels.py), as it keeps the registration stream. The
first message says which instance this is; then the control plane sends `open` and
`close` commands (an operator's `gossamer tap` of this sidecar's service), which go to
the telemetry's `Tap` (telemetry/tap.py), and every `FLUSH_SECONDS` while a tap is open
the records it queued go back as one `TapReport` per tap.

When the stream fails, or the channels move to another replica, every tap is closed
here (the operator's tap lives on the replica it was opened on; the new replica sends
`open` again for its own taps) and the stream is opened again after a back-off. The
stream's failures are not reported to the channels: the registration and ADS streams
decide when a replica is gone. A control plane without the Tap service (UNIMPLEMENTED)
is retried at the longest back-off; any other error (a message that does not decode, an
HTTP/2 error) is logged and retried too, so the sidecar stays tappable. The back-off
starts again after a session that was up for `GOOD_SESSION` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from typing import Any

from gossamer.contract import mesh_pb2
from gossamer.contract.rpc import TAP_WATCH
from gossamer.logs import event
from gossamer.proxy.agent.channels import Channels, reconnect_delay
from gossamer.proxy.telemetry.tap import Tap
from gossamer.proxy.transport.grpc_client import GrpcError, Status

log = logging.getLogger("gossamer.proxy.agent.tap_stream")

FLUSH_SECONDS = 0.2
GOOD_SESSION = 10.0  # a session up this long resets the back-off


class TapStream:
    def __init__(
        self,
        channels: Channels,
        tap: Tap,
        instance_id: str,
        *,
        rng: random.Random | None = None,
        max_backoff: float = 5.0,
    ) -> None:
        self.channels = channels
        self.tap = tap
        self.instance_id = instance_id
        self.rng = rng or random.Random()
        self.max_backoff = max_backoff
        self.sessions = 0
        self.connected = False
        self._moved = asyncio.Event()
        self._opened = asyncio.Event()  # a tap is open: the sender has work

    def move(self) -> None:
        """The current replica changed (channels.py `on_move`): reconnect there."""
        self._moved.set()

    async def run(self) -> None:
        attempt = 0
        while True:
            channel = self.channels.acquire()
            self._moved.clear()
            started = time.monotonic()
            try:
                await self._session(channel)
                attempt = 0
            except GrpcError as exc:
                attempt = self._next(attempt, started)
                if exc.code() == Status.UNIMPLEMENTED:
                    attempt = 30
                if self.connected or attempt == 1:
                    event(log, logging.INFO, "tap stream lost", error=exc.details())
            except Exception as exc:  # a bad message, an HTTP/2 error: never end the task
                attempt = self._next(attempt, started)
                event(log, logging.WARNING, "tap stream failed", error=repr(exc))
            finally:
                self.connected = False
                self.tap.close_all()
                await self.channels.release(channel)
            if self._moved.is_set():
                continue
            # its own back-off: the failover round (channels.retry_delay) is not its to drive
            await asyncio.sleep(reconnect_delay(attempt, self.rng, cap=self.max_backoff))

    def _next(self, attempt: int, started: float) -> int:
        """The next back-off step: from the start again after a session that was up for
        GOOD_SESSION seconds (a long good session is not a run of failures)."""
        if self.connected and time.monotonic() - started >= GOOD_SESSION:
            return 1
        return attempt + 1

    async def _session(self, channel: Any) -> None:
        stream = await channel.stream(TAP_WATCH)
        try:
            hello = mesh_pb2.TapReport(instance_id=self.instance_id)
            await stream.send(hello.SerializeToString())
            self.sessions += 1
            self.connected = True
            reader = asyncio.ensure_future(self._read(stream))
            sender = asyncio.ensure_future(self._send(stream))
            moved = asyncio.ensure_future(self._moved.wait())
            try:
                await asyncio.wait({reader, sender, moved}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (reader, sender, moved):
                    task.cancel()
                for task in (reader, sender):
                    with contextlib.suppress(asyncio.CancelledError):
                        await task  # raises the stream's error, if it failed
            if reader.done() and not reader.cancelled() and not self._moved.is_set():
                raise GrpcError(Status.UNAVAILABLE, "the control plane ended the tap stream")
        finally:
            stream.cancel()

    async def _read(self, stream: Any) -> None:
        while (raw := await stream.recv()) is not None:
            command = mesh_pb2.TapCommand.FromString(raw)
            kind = command.WhichOneof("kind")
            if kind == "open":
                tap = self.tap.open(command.open)
                self._opened.set()
                event(log, logging.INFO, "tap opened", tap=tap.id, rate=tap.bucket.rate)
            elif kind == "close":
                self.tap.close(command.close)
                event(log, logging.INFO, "tap closed", tap=command.close)

    async def _send(self, stream: Any) -> None:
        while True:
            if not self.tap.active:
                self._opened.clear()
                await self._opened.wait()
            await asyncio.sleep(FLUSH_SECONDS)
            for report in self.tap.drain():
                await stream.send(report.SerializeToString())
