"""The sidecar's registration stream: its instance is in the registry while it is open.

The first message describes the instance (the control plane takes the address it sees
the sidecar connect from when `address` is empty, and the service from the
certificate); later messages report health changes: `healthy` / `unhealthy` from the
app's readiness probe, `draining` when the sidecar shuts down. Closing the stream
deregisters the instance (the control plane revokes its lease at once).

When the stream fails, the instance is registered again after a jittered back-off; the
control plane lets the same instance id take over its previous lease, so a reconnect
does not wait for the old lease to expire.

A certificate renewal does not reopen this stream: the connection it runs on stays up
(TLS is not re-checked on an open connection), and reopening would make the registry
drop and re-add the endpoint (a takeover revokes the old lease first), which peers
would see as a flap. The next reconnect uses the new certificate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Any

from gossamer.contract import mesh_pb2
from gossamer.contract.rpc import REGISTER
from gossamer.logs import event
from gossamer.proxy.agent.channels import Channels, reconnect_delay
from gossamer.proxy.transport.grpc_client import Channel, GrpcError, Status

log = logging.getLogger("gossamer.proxy.agent.registration")


class Registration:
    def __init__(
        self,
        channels: Channels,
        instance: mesh_pb2.Instance,
        *,
        rng: random.Random | None = None,
        max_backoff: float = 5.0,
    ) -> None:
        self.channels = channels
        self.instance = instance
        self.health = instance.health or "healthy"
        self.rng = rng or random.Random()
        self.max_backoff = max_backoff
        self.registered = False
        self.acked_health = ""
        self.last_error: str | None = None
        self.sessions = 0
        self._changed = asyncio.Event()
        self._acked = asyncio.Event()
        self._closing = False
        self._stream: Any = None
        self._finished = asyncio.Event()

    def set_health(self, health: str) -> None:
        if health != self.health:
            self.health = health
            self._changed.set()

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            self._finished.set()

    async def _run(self) -> None:
        attempt = 0
        while not self._closing:
            channel = self.channels.acquire()
            try:
                if await self._session(channel):
                    attempt = 0
            except GrpcError as exc:
                self.last_error = f"{exc.code().name}: {exc.details()}"
                if exc.code() in (Status.PERMISSION_DENIED, Status.INVALID_ARGUMENT):
                    event(log, logging.ERROR, "registration refused", error=exc.details())
            finally:
                self.registered = False
                self._stream = None
                await self.channels.release(channel)
            if self._closing:
                return
            attempt += 1
            delay = reconnect_delay(attempt, self.rng, cap=self.max_backoff)
            event(
                log,
                logging.WARNING,
                "registration lost; registering again",
                error=self.last_error,
                retry_in=round(delay, 2),
            )
            await asyncio.sleep(delay)

    async def _session(self, channel: Channel) -> bool:
        stream = self._stream = await channel.stream(REGISTER)
        self.sessions += 1
        instance = mesh_pb2.Instance()
        instance.CopyFrom(self.instance)
        instance.health = sent = self.health
        await stream.send(mesh_pb2.RegisterRequest(instance=instance).SerializeToString())
        reply = await stream.recv()
        if reply is None:
            raise GrpcError(Status.UNAVAILABLE, "the control plane ended the registration")
        status = mesh_pb2.RegisterResponse.FromString(reply)
        if status.status != "registered":
            raise GrpcError(Status.INVALID_ARGUMENT, status.message or status.status)
        self.registered, self.acked_health, self.last_error = True, sent, None
        event(log, logging.INFO, "instance registered", instance=self.instance.instance_id)
        reader = asyncio.ensure_future(self._read(stream))
        try:
            while True:
                if self.health != sent:
                    sent = self.health
                    await stream.send(mesh_pb2.RegisterRequest(health=sent).SerializeToString())
                    continue
                self._changed.clear()
                changed = asyncio.ensure_future(self._changed.wait())
                await asyncio.wait({changed, reader}, return_when=asyncio.FIRST_COMPLETED)
                changed.cancel()
                if reader.done():
                    reader.result()  # raises the stream's error
                    if self._closing:
                        return True
                    raise GrpcError(Status.UNAVAILABLE, "the control plane ended the registration")
        finally:
            reader.cancel()

    async def _read(self, stream: Any) -> None:
        while (raw := await stream.recv()) is not None:
            reply = mesh_pb2.RegisterResponse.FromString(raw)
            if reply.status == "updated":
                self.acked_health = reply.message
                self._acked.set()
            elif reply.status == "rejected":
                event(log, logging.WARNING, "health update rejected", error=reply.message)

    async def drain(self, timeout: float = 2.0) -> bool:
        """Report `draining` and wait until the control plane has recorded it."""
        self.set_health("draining")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while self.acked_health != "draining":
                    self._acked.clear()
                    await self._acked.wait()
                return True
        return False

    async def close(self, timeout: float = 2.0) -> None:
        """Deregister: end the stream and wait until the control plane closed it."""
        self._closing = True
        self._changed.set()
        stream = self._stream
        if stream is None:
            return
        with contextlib.suppress(GrpcError):
            await stream.end()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._finished.wait()
        stream.cancel()
