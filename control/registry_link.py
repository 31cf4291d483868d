"""The control plane's link to the registry: mesh.yaml's static services go in, the
registry's state comes out to the publisher.

- `start(static)` opens the store, makes its static content equal to mesh.yaml's, reads
  the state and hands it to `on_state` before anything is served, then follows the
  store's watch (every change, RESYNC on fall-behind) in a task.
- `request_sync(static)` after a reload: syncs in the background; concurrent requests
  coalesce so only the newest file is written. A sync writes one key at a time; the
  states in between are applied but not published, so sidecars see one change per
  reload (all new clusters with their endpoints), never a half-written file.
- If the store becomes unreachable the follower retries with backoff from the last
  revision it applied; the publisher keeps serving the last state meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable

from gossamer.discovery.mesh_services import MeshServices
from gossamer.discovery.model import RegistryState
from gossamer.discovery.registry import Registry
from gossamer.discovery.store import Store
from gossamer.errors import GossamerError
from gossamer.logs import event

from .sources import apply_event

log = logging.getLogger("gossamer.control.registry")


class RegistryLink:
    def __init__(self, store: Store, on_state: Callable[[RegistryState], None]) -> None:
        self.store = store
        self.registry = Registry(store)
        self._on_state = on_state
        self.state: RegistryState | None = None
        self._wanted: MeshServices | None = None
        self._sync_task: asyncio.Task[None] | None = None
        self._follow_task: asyncio.Task[None] | None = None
        self.last_sync_error: str | None = None
        self._state_changed = asyncio.Event()
        self._holding = False  # a sync is writing: apply changes, publish none
        self._hold_until = 0  # ... and none before this revision is reached

    async def start(self, static: MeshServices) -> None:
        await self.store.start()
        await self._sync(static)
        state = await self.store.state()
        self._publish(state)
        self._follow_task = asyncio.create_task(self._follow(), name="registry-follow")

    def _publish(self, state: RegistryState) -> None:
        self.state = state
        if not self._holding and state.revision >= self._hold_until:
            self._on_state(state)
        self._state_changed.set()

    async def _sync(self, static: MeshServices) -> int:
        self._holding = True
        try:
            report = await self.registry.sync_static(static.services, static.endpoints)
        finally:
            self._holding = False
        self._hold_until = report.revision
        self.last_sync_error = None
        if self.state is not None and self.state.revision >= self._hold_until:
            self._on_state(self.state)  # everything the sync wrote has been applied
        return report.revision

    def request_sync(self, static: MeshServices) -> None:
        self._wanted = static
        if self._sync_task is None or self._sync_task.done():
            self._sync_task = asyncio.create_task(self._sync_loop(), name="registry-sync")

    async def _sync_loop(self) -> None:
        while self._wanted is not None:
            static, self._wanted = self._wanted, None
            try:
                await self._sync(static)
            except GossamerError as exc:
                self.last_sync_error = exc.message
                event(log, logging.ERROR, "static services not applied", error=exc.message)

    async def settle(self, timeout: float = 10.0) -> RegistryState:
        """Wait for a pending sync and for the state to catch up with the store (tests,
        and operations that must see their own writes)."""
        async with asyncio.timeout(timeout):
            if self._sync_task is not None:
                await self._sync_task
            target = (await self.store.state()).revision
            while self.state is None or self.state.revision < target:
                self._state_changed.clear()
                await self._state_changed.wait()
        assert self.state is not None
        return self.state

    async def _follow(self) -> None:
        backoff = 0.2
        while True:
            assert self.state is not None
            try:
                async for change in self.store.watch(self.state.revision):
                    try:
                        new_state = apply_event(self.state, change)
                    except ValueError as exc:
                        event(log, logging.ERROR, "registry event ignored", error=str(exc))
                        continue
                    self._publish(new_state)
                    backoff = 0.2
                return  # the store was closed
            except GossamerError as exc:
                event(log, logging.WARNING, "registry watch interrupted", error=exc.message)
            await asyncio.sleep(backoff * random.uniform(0.5, 1.5))
            backoff = min(backoff * 2, 5.0)

    async def close(self) -> None:
        for task in (self._sync_task, self._follow_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        with contextlib.suppress(GossamerError):
            await self.registry.close()
        with contextlib.suppress(GossamerError):
            await self.store.close()
