"""A copy in memory of one etcd key prefix, kept current by a watch.

The control plane reads what replicas share (revocations, trust bundle, CRLs, join
tokens: control/etcd_security.py) on hot paths that cannot wait for etcd, such as every
mTLS call's revocation check. `EtcdMirror` reads the whole prefix once (`start`), then
follows it with one etcd watch from the next revision; every applied change bumps
`revision` and calls `on_change`, so the control plane republishes within milliseconds
of a write on any replica. When the watch breaks (a member died, etcd restarted) it reads
the prefix again and watches from there after a backoff; while etcd is unreachable the
last copy keeps serving. Writers may `apply` what they just wrote, so their own reads see
it before the watch echoes it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import aetcd.exceptions as ax
import grpc
from aetcd import rpc, utils

from gossamer.discovery.etcd import EtcdStore
from gossamer.discovery.store import StoreUnavailable
from gossamer.errors import GossamerError
from gossamer.logs import event

log = logging.getLogger("gossamer.control.etcd_mirror")
REQUIRE_LEADER = (("hasleader", "true"),)
_BROKEN = (ax.ClientError, grpc.aio.AioRpcError, StoreUnavailable, GossamerError)


class EtcdMirror:
    def __init__(self, store: EtcdStore, prefix: bytes) -> None:
        self.store = store
        self.prefix = prefix
        self.values: dict[bytes, bytes] = {}  # key (without the prefix) -> value
        self.revision = 0  # of the last change applied
        self._revs: dict[bytes, int] = {}  # key -> revision of the value held
        self.on_change: Callable[[], None] = lambda: None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._load()
        self._task = asyncio.create_task(self._follow(), name="etcd-mirror")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def items(self, sub: bytes) -> dict[bytes, bytes]:
        """The keys under `sub` (without `sub`) and their values."""
        return {k[len(sub) :]: v for k, v in self.values.items() if k.startswith(sub)}

    def apply(self, key: bytes, value: bytes | None, revision: int) -> None:
        """Record a change (a write of ours, or one the watch reports)."""
        if revision and revision < self._revs.get(key, 0):
            return  # older than what we hold for this key (our own write came first)
        self._revs[key] = revision
        if value is None:
            self.values.pop(key, None)
        else:
            self.values[key] = value
        self.revision = max(self.revision, revision)
        self.on_change()

    async def _load(self) -> int:
        client = self.store.client
        result = await self.store.call("read", lambda: client.get_prefix(self.prefix))
        self.values = {kv.key[len(self.prefix) :]: kv.value for kv in result.kvs}
        self._revs = {kv.key[len(self.prefix) :]: int(kv.mod_revision) for kv in result.kvs}
        self.revision = int(result.header.revision)
        self.on_change()
        return self.revision

    async def _follow(self) -> None:
        delay = 0.1
        revision = self.revision
        while True:
            try:
                async for changes in self._watch(revision + 1):
                    for key, value, rev in changes:
                        self.apply(key, value, rev)
                        revision = max(revision, rev)
                    delay = 0.1
            except asyncio.CancelledError:
                raise
            except _BROKEN as exc:
                event(log, logging.INFO, "shared CA state watch broke; reading it again",
                      error=str(exc), retry_in=delay)  # fmt: skip
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
            try:
                revision = await self._load()
            except _BROKEN:
                continue

    async def _watch(self, start: int) -> AsyncIterator[list[tuple[bytes, bytes | None, int]]]:
        create = rpc.WatchCreateRequest(
            key=self.prefix, range_end=utils.prefix_range_end(self.prefix), start_revision=start
        )
        stop = asyncio.Event()

        async def requests() -> AsyncIterator[Any]:
            yield rpc.WatchRequest(create_request=create)
            await stop.wait()

        call = rpc.WatchStub(self.store.client.channel).Watch(requests(), metadata=REQUIRE_LEADER)
        try:
            async for response in call:
                if response.compact_revision or response.canceled:
                    raise GossamerError("the shared CA state watch was compacted or cancelled")
                yield [
                    (
                        item.kv.key[len(self.prefix) :],
                        item.kv.value if item.type == rpc.Event.PUT else None,
                        int(item.kv.mod_revision),
                    )
                    for item in response.events
                ]
        finally:
            stop.set()
            call.cancel()
