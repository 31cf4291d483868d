"""The sidecar's registration stream: its instance is in the registry while it is open.

The first message describes the instance (the control plane takes the address it sees
the sidecar connect from when `address` is empty, and the service from the
certificate); later messages report health changes: `healthy` / `unhealthy` from the
app's readiness probe, `draining` when the sidecar shuts down. Closing the stream
deregisters the instance (the control plane revokes its lease at once).

When the stream fails, the failure goes to the channels (agent/channels.py: a replica
that is gone makes the sidecar move to the next one) and the instance is registered
again, at once on a replica not yet tried, else after a jittered back-off; the control
plane lets the same instance id take over its previous lease (shared through etcd
between replicas), so a reconnect does not wait for the old lease to expire. When the
channels move to another replica while this stream is fine (back to the preferred
one), `move()` registers there first and then ends the old stream (make before break).

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
from gossamer.proxy.agent.channels import Channels
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
        self._moved = asyncio.Event()
        self.target = ""  # the control plane replica of the last registration

    def set_health(self, health: str) -> None:
        if health != self.health:
            self.health = health
            self._changed.set()

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            self._finished.set()

    def move(self) -> None:
        """The current control-plane replica changed: re-register there (agent/channels.py
        calls this after a failover or a move back to the preferred replica)."""
        self._moved.set()

    async def _run(self) -> None:
        attempt = 0
        handed: tuple[Channel, Any] | None = None  # a session a move opened already
        while not self._closing:
            channel, stream = handed if handed is not None else (self.channels.acquire(), None)
            handed = None
            status = ""
            try:
                if stream is None:
                    stream = await self._open(channel)
                attempt = 0  # registered: the back-off starts afresh
                handed = await self._hold(channel, stream)
            except GrpcError as exc:
                status = exc.code().name
                self.last_error = f"{status}: {exc.details()}"
                if exc.code() in (Status.PERMISSION_DENIED, Status.INVALID_ARGUMENT):
                    event(log, logging.ERROR, "registration refused", error=exc.details())
            finally:
                self.registered = self.registered and handed is not None
                if handed is None:
                    self._stream = None
                if status:
                    self.channels.failed(channel, status)  # may move to another replica
                if stream is not None and handed is not None:
                    # moved: the new replica's registration took over this one's lease;
                    # ending this stream removes nothing more
                    with contextlib.suppress(GrpcError):
                        await stream.end()
                    stream.cancel()
                await self.channels.release(channel)
            if self._closing or handed is not None:
                continue
            attempt += 1
            delay = self.channels.retry_delay(attempt, self.rng, self.max_backoff)
            event(
                log,
                logging.WARNING,
                "registration lost; registering again",
                error=self.last_error,
                retry_in=round(delay, 2),
            )
            # short while a replica is left untried, the back-off once all failed
            await asyncio.sleep(delay)

    async def _open(self, channel: Channel) -> Any:
        """Open a registration stream on `channel` and register; returns the stream."""
        stream = await channel.stream(REGISTER)
        try:
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
        except BaseException:
            stream.cancel()
            raise
        self.sessions += 1
        self._stream = stream
        self.registered, self.acked_health, self.last_error = True, sent, None
        self.channels.succeeded(channel)
        self.target = channel.target
        event(
            log,
            logging.INFO,
            "instance registered",
            instance=self.instance.instance_id,
            control=channel.target,
        )
        return stream

    async def _hold(self, channel: Channel, stream: Any) -> tuple[Channel, Any] | None:
        """Keep the session: send health changes until the stream fails (raises), the
        registration is closed (None), or a move opened a session elsewhere (returned)."""
        sent = self.acked_health
        reader = asyncio.ensure_future(self._read(stream))
        try:
            while True:
                if self.health != sent:
                    sent = self.health
                    await stream.send(mesh_pb2.RegisterRequest(health=sent).SerializeToString())
                    continue
                if self._moved.is_set() and not self._closing:
                    self._moved.clear()
                    moved = await self._open_elsewhere(channel)
                    if moved is not None:
                        return moved
                self._changed.clear()
                changed = asyncio.ensure_future(self._changed.wait())
                moving = asyncio.ensure_future(self._moved.wait())
                await asyncio.wait({changed, moving, reader}, return_when=asyncio.FIRST_COMPLETED)
                changed.cancel()
                moving.cancel()
                if reader.done():
                    reader.result()  # raises the stream's error
                    if self._closing:
                        return None
                    raise GrpcError(Status.UNAVAILABLE, "the control plane ended the registration")
        finally:
            reader.cancel()

    async def _open_elsewhere(self, channel: Channel) -> tuple[Channel, Any] | None:
        """After a move, register on the new current replica before leaving this one
        (make before break: peers never see the endpoint missing)."""
        new = self.channels.acquire()
        if new is channel or new.target == channel.target:
            await self.channels.release(new)  # the same replica: this stream stays
            return None
        try:
            return new, await self._open(new)
        except GrpcError as exc:
            # this stream still works: stay on it (the ADS stream reports the replica's
            # failures; the next move tries again)
            event(
                log,
                logging.WARNING,
                "could not register on the new replica; staying",
                error=f"{exc.code().name}: {exc.details()}",
            )
            await self.channels.release(new)
            return None

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
