"""Replicas on etcd announce themselves, so one starting after a total outage waits.

Sidecars' registrations live in etcd under leases the control-plane replicas keep alive
for them. When every replica is down for longer than the lease TTL, etcd ends those
leases and the registry holds no sidecar at all; the first replica back would serve
every reconnecting sidecar configuration without the instances that have not yet
registered again, and each would drop its endpoints for a moment. The embedded store
handles the same case by holding configuration for one lease TTL after a restart from its
file (control/server.py); this module tells a replica on etcd when to do the same:

    <prefix>.replicas/live/<id>   one per running replica, under a lease of lease_ttl
                                  that the replica keeps alive (gone with it)
    <prefix>.replicas/meshed      written once a replica has run: the mesh is not new

At start a replica reads both in one request. `meshed` present with no live replica
means the mesh ran and every replica has been gone for about a lease TTL, so the
sidecars' registrations are gone too: hold. A new mesh (no `meshed`) or another live
replica (registrations intact, or moving to this one) means no hold. A replica writes
its own `live` key before `meshed`, so a replica that reads `meshed` also reads the
`live` key of the replica that wrote it while that one runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
import uuid
from typing import TYPE_CHECKING

from gossamer.discovery.store import Store, StoreUnavailable
from gossamer.errors import GossamerError, NotFound
from gossamer.logs import event

if TYPE_CHECKING:
    from gossamer.discovery.etcd import EtcdStore

log = logging.getLogger("gossamer.control")


def presence_for(store: Store, ttl: float) -> ReplicaPresence | None:
    """This replica's presence when the registry is in etcd (None: embedded)."""
    etcd = sys.modules.get("gossamer.discovery.etcd")  # loaded if the store is etcd
    if etcd is None or not isinstance(store, etcd.EtcdStore):
        return None
    return ReplicaPresence(store, ttl)


def presence_prefix(registry_prefix: str) -> bytes:
    return f"{registry_prefix}.replicas/".encode()


class ReplicaPresence:
    """This replica's `live` key in etcd, kept alive while it runs."""

    def __init__(self, store: EtcdStore, ttl: float) -> None:
        self.store = store
        self.ttl = ttl
        self.prefix = presence_prefix(store.layout.prefix)
        self.id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._lease: int | None = None
        self._task: asyncio.Task[None] | None = None

    async def announce(self) -> bool:
        """Read the others, then announce this replica; returns whether to hold (the
        mesh ran before and no replica is alive now)."""
        client = self.store.client
        found = await self.store.call("read", lambda: client.get_prefix(self.prefix))
        keys = {kv.key[len(self.prefix) :] for kv in found.kvs}
        others = [k for k in keys if k.startswith(b"live/")]
        hold = b"meshed" in keys and not others
        await self._go_live()
        if b"meshed" not in keys:
            await self.store.call("write", lambda: client.put(self.prefix + b"meshed", b"1"))
        self._task = asyncio.create_task(self._keep_alive(), name="replica-presence")
        return hold

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
            except StoreUnavailable as exc:
                event(log, logging.WARNING, "replica presence keep-alive failed, retrying",
                      error=exc.message)  # fmt: skip

    async def _go_live(self) -> None:
        client = self.store.client
        self._lease = lease = await self.store.grant_lease(self.ttl)
        live = self.prefix + b"live/" + self.id.encode()
        await self.store.call("write", lambda: client.put(live, b"1", lease=lease))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._lease is not None:
            with contextlib.suppress(GossamerError):
                await self.store.revoke_lease(self._lease)
