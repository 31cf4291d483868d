"""Replicas on etcd announce themselves, so those starting after a total outage wait.

Sidecars' registrations live in etcd under leases the control-plane replicas keep alive
for them. When every replica is down for longer than the lease TTL, etcd ends those
leases and the registry holds no sidecar at all; a replica back would serve every
reconnecting sidecar configuration without the instances that have not yet registered
again, and each would drop its endpoints for a moment. The embedded store handles the
same case by holding configuration for one lease TTL after a restart from its file
(control/server.py); this module tells a replica on etcd when, and how long, to do the
same:

    <prefix>.replicas/live/<id>   one per running replica, under a lease of lease_ttl
                                  that it keeps alive; its value is the wall-clock time
                                  until which that replica holds (0: it does not)
    <prefix>.replicas/meshed      written once a replica has run: the mesh is not new

At start a replica reads both in one request (`hold_seconds`, pure):
- no `meshed`: a new mesh, nothing to wait for;
- `meshed` and no live replica: every replica has been gone for about a lease TTL, so
  the sidecars' registrations are gone too: hold one lease TTL;
- live replicas still holding (they came back from the same outage a moment earlier):
  hold until the latest of their deadlines, so every replica back from an outage
  serves at the same moment, whichever one a sidecar reconnects to;
- live replicas not holding: registrations are intact (or moving here): no hold.
A replica writes its own `live` key (with its deadline) before `meshed`, so a replica
that reads `meshed` also reads the key of the replica that wrote it while that one runs.
A replica stopping gracefully while its sidecars move elsewhere leaves its key to run out
with their leases (`leave()`), so one restarted within a TTL does not hold for nothing.
What remains: a replica killed outright keeps its key up to ttl/3 longer than its
sidecars' leases (both are renewed every ttl/3); one starting in that window serves at
once a registry that is missing instances.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from gossamer.discovery.store import Store
from gossamer.errors import GossamerError, NotFound
from gossamer.logs import event

if TYPE_CHECKING:
    from gossamer.discovery.etcd import EtcdStore

log = logging.getLogger("gossamer.control")
LIVE = b"live/"
MESHED = b"meshed"


def presence_for(store: Store, ttl: float) -> ReplicaPresence | None:
    """This replica's presence when the registry is in etcd (None: embedded)."""
    etcd = sys.modules.get("gossamer.discovery.etcd")  # loaded if the store is etcd
    if etcd is None or not isinstance(store, etcd.EtcdStore):
        return None
    return ReplicaPresence(store, ttl)


def hold_seconds(keys: Mapping[bytes, bytes], now: float, ttl: float) -> float:
    """How long a replica starting now holds configuration, from the presence keys
    (relative to the presence prefix) it read."""
    if MESHED not in keys:
        return 0.0
    deadlines = []
    for key, value in keys.items():
        if key.startswith(LIVE):
            try:
                deadlines.append(float(json.loads(value).get("hold_until", 0)))
            except (ValueError, TypeError, AttributeError):
                deadlines.append(0.0)  # a replica of another version: it runs, no hold
    if not deadlines:
        return ttl
    return max(0.0, max(deadlines) - now)


class ReplicaPresence:
    """This replica's `live` key in etcd, kept alive while it runs."""

    def __init__(
        self, store: EtcdStore, ttl: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.ttl = ttl
        self.prefix = f"{store.layout.prefix}.replicas/".encode()
        self.id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._clock = clock
        self._value = b""
        self._lease: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._leaving = False

    async def announce(self) -> float:
        """Read the others, then announce this replica; returns how long to hold."""
        client = self.store.client
        found = await self.store.call("read", lambda: client.get_prefix(self.prefix))
        keys = {kv.key[len(self.prefix) :]: kv.value for kv in found.kvs}
        now = self._clock()
        hold = hold_seconds(keys, now, self.ttl)
        self._value = json.dumps({"hold_until": now + hold if hold else 0}).encode()
        await self._go_live()
        if MESHED not in keys:
            await self.store.call("write", lambda: client.put(self.prefix + MESHED, b"1"))
        self._task = asyncio.create_task(self._keep_alive(), name="replica-presence")
        return hold

    async def _go_live(self) -> None:
        client = self.store.client
        self._lease = lease = await self.store.grant_lease(self.ttl)
        live, value = self.prefix + LIVE + self.id.encode(), self._value
        await self.store.call("write", lambda: client.put(live, value, lease=lease))

    async def _keep_alive(self) -> None:
        interval = max(self.ttl / 3, 0.5)
        while True:
            await asyncio.sleep(interval)
            try:
                assert self._lease is not None
                await self.store.keep_alive(self._lease)
            except NotFound:  # lost (etcd was unreachable longer than the TTL): again
                with contextlib.suppress(GossamerError):
                    await self._go_live()
            except GossamerError as exc:  # unreachable, or refused: the next tick retries
                event(log, logging.WARNING, "replica presence keep-alive failed, retrying",
                      error=exc.message)  # fmt: skip

    def leave(self) -> None:
        """At close, leave the key to run out with the sidecars' leases (they move to
        another replica) instead of removing it."""
        self._leaving = True

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._lease is not None and not self._leaving:
            with contextlib.suppress(GossamerError):
                await self.store.revoke_lease(self._lease)
