"""The sidecar's channels to the control plane, and the back-off its calls retry with.

`ControlChannels` holds the channel to the current control-plane replica (replicas.py
decides which one: preference order, failover, fail-back). Every call takes it with
`acquire` and gives it back with `release`; a channel that is no longer current is
closed when its last call has ended, so a long-lived stream is never cut by a
certificate renewal (`replace()`: a new channel to the same replica for new calls).

Failover: a caller whose call failed reports it (`failed(channel, status)`); if that
status says the replica is gone (`replicas.fails_over`) and the channel is still the
current one, the set moves to the next replica, a new channel is made for it and the
`on_move` listeners run (the ADS client reconnects at once; the registration moves).
`retry_delay` then tells the caller to retry at once while the round has replicas left
to try, and to back off (`reconnect_delay`) once all failed in a row. With several
replicas the connect timeout is short (2 s) and keepalive pings come every 15 s (5 s
to answer), so a replica that vanished without closing its connections (a lost host)
is noticed within 20 s; one whose process ended is noticed at once.

Fail-back: `run_probes()` (a task of the agent) probes the preferred replica every
`probe_interval` seconds while the sidecar is elsewhere: a mutual-TLS connection and
an HTTP/2 PING. When it answers, that connection becomes the current channel.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import Callable
from typing import Any, Protocol

from gossamer.contract.identity import CONTROL_TLS_NAME
from gossamer.logs import event
from gossamer.proxy.agent.replicas import ReplicaSet, fails_over, format_address
from gossamer.proxy.transport.grpc_client import Channel

log = logging.getLogger("gossamer.proxy.agent.channels")

FAILOVER_CONNECT_TIMEOUT = 2.0
FAILOVER_KEEPALIVE = 15.0  # the control plane accepts pings every 10 s or slower
FAILOVER_KEEPALIVE_TIMEOUT = 5.0
PROBE_TIMEOUT = 3.0


def reconnect_delay(
    attempt: int, rng: random.Random, base: float = 0.25, cap: float = 5.0
) -> float:
    """Exponential back-off with jitter: between half and all of min(cap, base * 2^n)."""
    ceiling: float = min(cap, base * (2.0 ** min(attempt, 30)))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


def plane_channel(host: str, port: int, context: ssl.SSLContext, **kw: float) -> Channel:
    """A channel that verifies the control plane under its fixed TLS name."""
    return Channel(host, port, context, CONTROL_TLS_NAME, **kw)


class Channels(Protocol):
    def acquire(self) -> Channel: ...

    async def release(self, channel: Channel) -> None: ...

    def failed(self, channel: Channel, status: str) -> bool: ...

    def succeeded(self, channel: Channel) -> None: ...

    def retry_delay(self, attempt: int, rng: random.Random, cap: float) -> float: ...


class ControlChannels:
    def __init__(
        self,
        replicas: ReplicaSet | tuple[str, int],
        context: ssl.SSLContext,
        *,
        on_move: list[Callable[[], None]] | None = None,
    ) -> None:
        if not isinstance(replicas, ReplicaSet):
            replicas = ReplicaSet((replicas,))
        self.replicas = replicas
        self.context = context
        self.on_move = on_move if on_move is not None else []
        self._index: dict[Channel, int] = {}
        self.current = self._channel(replicas.current)
        self._users: dict[Channel, int] = {}

    @property
    def host(self) -> str:
        return self.replicas.address[0]

    @property
    def port(self) -> int:
        return self.replicas.address[1]

    @property
    def target(self) -> str:
        return format_address(self.replicas.address)

    def status(self) -> dict[str, Any]:
        """The replicas as `/config_dump` (sidecar) and `/ready` (gateway) show them."""
        replicas = self.replicas
        return {
            "current": self.target,
            "preferred": replicas.preferred,
            "addresses": [format_address(a) for a in replicas.addresses],
            "moves": replicas.moves,
        }

    def _channel(self, index: int) -> Channel:
        host, port = self.replicas.addresses[index]
        if self.replicas.several:
            channel = plane_channel(
                host,
                port,
                self.context,
                connect_timeout=FAILOVER_CONNECT_TIMEOUT,
                keepalive=FAILOVER_KEEPALIVE,
                keepalive_timeout=FAILOVER_KEEPALIVE_TIMEOUT,
            )
        else:
            channel = plane_channel(host, port, self.context)
        self._index[channel] = index
        return channel

    def acquire(self) -> Channel:
        channel = self.current
        self._users[channel] = self._users.get(channel, 0) + 1
        return channel

    async def release(self, channel: Channel) -> None:
        left = self._users.get(channel, 1) - 1
        if left > 0:
            self._users[channel] = left
            return
        self._users.pop(channel, None)
        if channel is not self.current:
            self._index.pop(channel, None)
            await channel.close()

    async def replace(self, context: ssl.SSLContext) -> None:
        """New credentials (a renewal): a new channel to the same replica."""
        self.context = context
        await self._switch(self._channel(self.replicas.current))

    async def _switch(self, channel: Channel) -> None:
        old, self.current = self.current, channel
        if old not in self._users:
            self._index.pop(old, None)
            await old.close()

    # -- failover and fail-back --------------------------------------------------------
    def succeeded(self, channel: Channel) -> None:
        index = self._index.get(channel)
        if index is not None:
            self.replicas.succeeded(index)

    def failed(self, channel: Channel, status: str) -> bool:
        """A call on `channel` failed with gRPC status `status` (its name); True when
        the sidecar moved to another replica because of it."""
        index = self._index.get(channel)
        if index is None or not fails_over(status):
            return False
        before = self.target
        if not self.replicas.failed(index):
            return False
        # the failed channel is in use by the caller: `release` closes it
        self.current = self._channel(self.replicas.current)
        event(
            log,
            logging.WARNING,
            "control plane replica failed; moving to the next",
            failed=before,
            to=self.target,
            status=status,
            moves=self.replicas.moves,
        )
        self._notify()
        return True

    def retry_delay(self, attempt: int, rng: random.Random, cap: float) -> float:
        """How long a caller waits before its next try: a moment while the round has
        untried replicas, else the jittered exponential back-off."""
        if self.replicas.fresh:
            return 0.05 + rng.uniform(0, 0.1)
        return reconnect_delay(attempt, rng, cap=cap)

    def _notify(self) -> None:
        for listener in list(self.on_move):
            listener()

    async def probe_preferred(self) -> bool:
        """Probe the preferred replica now; move back to it if it answers."""
        before = self.target
        channel = self._channel(0)
        answered = False
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                answered = await channel.ping(PROBE_TIMEOUT)
        except Exception:  # any failure means "not back yet"
            answered = False
        if not self.replicas.probed(answered=answered):
            self._index.pop(channel, None)
            await channel.close()
            return False
        await self._switch(channel)  # the probe's connection becomes the current one
        event(
            log,
            logging.INFO,
            "preferred control plane replica answers again; moving back",
            left=before,
            to=self.target,
            moves=self.replicas.moves,
        )
        self._notify()
        return True

    async def run_probes(self) -> None:
        """While on a less preferred replica, probe the preferred one now and then."""
        while True:
            preferred = self.replicas.preferred
            await asyncio.sleep(1.0 if preferred else max(0.05, self.replicas.probe_wait()))
            if self.replicas.probe_due():
                await self.probe_preferred()

    async def close(self) -> None:
        for channel in {self.current, *self._users}:
            await channel.close()
