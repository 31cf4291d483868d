"""The sidecar's channels to the control plane, and the back-off its calls retry with.

`ControlChannels` holds the current mutual-TLS channel; after a certificate renewal
`replace()` makes a new one for new calls, and the old one is closed when the last call
using it (`acquire`/`release`) has ended, so a long-lived stream is never cut by a
renewal. `reconnect_delay` is the jittered exponential back-off shared by the ADS
stream, the registration stream, bootstrap and renewal.
"""

from __future__ import annotations

import random
import ssl
from typing import Protocol

from gossamer.contract.identity import CONTROL_TLS_NAME
from gossamer.proxy.transport.grpc_client import Channel


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


class ControlChannels:
    def __init__(self, host: str, port: int, context: ssl.SSLContext) -> None:
        self.host, self.port = host, port
        self.current = plane_channel(host, port, context)
        self._users: dict[Channel, int] = {}

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
            await channel.close()

    async def replace(self, context: ssl.SSLContext) -> None:
        old = self.current
        self.current = plane_channel(self.host, self.port, context)
        if old not in self._users:
            await old.close()

    async def close(self) -> None:
        for channel in {self.current, *self._users}:
            await channel.close()
