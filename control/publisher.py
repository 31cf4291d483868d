"""Turns the current inputs (registry state, mesh config, trust bundle) into published
snapshots, one per node group.

Inputs change through `set_state`, `set_mesh` and `set_trust_bundle` (the bundle and
the CRLs pushed with it in ROOTCA); each marks the
publisher dirty and schedules one `publish()` on the event loop, so a burst of registry
events (a resync, many sidecars registering at once) costs one translation. `publish`
builds the snapshots of the proxyless group, of every service's sidecar group and of
every group a connected stream follows; a resource shared by several groups is
serialised and hashed once. An inconsistent snapshot is logged and not published (the
group keeps its last good one).

`hold(seconds)` publishes nothing for a while (inputs still change): after a restart
of an embedded registry, whose sidecar registrations died with the old process, so
that re-registering sidecars are back before any sidecar is told the endpoint set
(else a caller that reconnects first would see its callees vanish). Streams that
connect meanwhile wait for their first snapshot, keeping their last good configuration.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf.message import Message

from gossamer.discovery.model import RegistryState
from gossamer.logs import event

from .cache import InconsistentSnapshot, Resource, Snapshot, SnapshotCache
from .config import MeshConfig
from .translate import MeshInputs, NodeGroup, Translator

log = logging.getLogger("gossamer.control.publisher")


@dataclass
class PublishStats:
    publishes: int = 0
    last_duration: float = 0.0
    last_at: float | None = None
    groups: int = 0
    failures: int = 0


class Publisher:
    def __init__(self, cache: SnapshotCache, clock: Callable[[], float] = time.monotonic) -> None:
        self.cache = cache
        self.clock = clock
        self.stats = PublishStats()
        self._state: RegistryState | None = None
        self._mesh: MeshConfig | None = None
        self._bundle: bytes | None = None
        self._crl: bytes | None = None
        self._translator: Translator | None = None
        self._known_groups: dict[str, NodeGroup] = {}
        self._scheduled = False
        self._held_until: float | None = None

    # -- inputs --------------------------------------------------------------------
    @property
    def state(self) -> RegistryState | None:
        return self._state

    @property
    def mesh(self) -> MeshConfig | None:
        return self._mesh

    def set_state(self, state: RegistryState) -> None:
        self._state = state
        self._schedule()

    def set_mesh(self, mesh: MeshConfig) -> None:
        self._mesh = mesh
        self._schedule()

    @property
    def trust_material(self) -> tuple[bytes | None, bytes | None]:
        """The trust bundle and CRLs the ROOTCA secret carries now."""
        return self._bundle, self._crl

    def set_trust_bundle(self, bundle: bytes | None, crl: bytes | None = None) -> None:
        if bundle != self._bundle or crl != self._crl:
            self._bundle, self._crl = bundle, crl
            self._schedule()

    def _schedule(self) -> None:
        """Publish soon, once for everything that changed until then; without a
        running loop (tests, start-up), publish now."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.publish()
            return
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._run_scheduled)

    def _run_scheduled(self) -> None:
        self._scheduled = False
        self.publish()

    def hold(self, seconds: float) -> None:
        """Publish nothing for `seconds` (then everything at once); needs a running loop."""
        self._held_until = self.clock() + seconds
        asyncio.get_running_loop().call_later(seconds, self._release)

    @property
    def held(self) -> bool:
        return self._held_until is not None and self.clock() < self._held_until

    def _release(self) -> None:
        self._held_until = None
        self.publish()

    # -- output --------------------------------------------------------------------
    def inputs(self) -> MeshInputs | None:
        if self._state is None or self._mesh is None:
            return None
        mesh = self._mesh
        return MeshInputs(self._state, mesh.trust_domain, mesh.policies, self._bundle, self._crl)

    def publish(self) -> None:
        inputs = self.inputs()
        if inputs is None or self.held:
            return
        started = self.clock()
        translator = Translator(inputs)
        self._translator = translator
        groups = {g.name: g for g in translator.groups()}
        watched = self.cache.watched_groups()
        # groups that only streams asked for live as long as someone watches them
        self._known_groups = {n: g for n, g in self._known_groups.items() if n in watched}
        groups.update((n, g) for n, g in self._known_groups.items() if n not in groups)
        for name in self.cache.groups():
            if name not in groups:
                self.cache.clear(name)
        memo: dict[tuple[int, str], Resource] = {}
        for group in groups.values():
            self._publish_group(translator, group, memo)
        self.stats.publishes += 1
        self.stats.groups = len(groups)
        self.stats.last_duration = self.clock() - started
        self.stats.last_at = time.time()
        event(
            log,
            logging.DEBUG,
            "snapshots published",
            groups=len(groups),
            seconds=round(self.stats.last_duration, 4),
        )

    def ensure_group(self, group: NodeGroup) -> None:
        """Make sure a group a new stream joins has a snapshot (if inputs exist)."""
        self._known_groups[group.name] = group
        if self.cache.get(group.name) is None and self._translator is not None and not self.held:
            self._publish_group(self._translator, group, {})

    def _publish_group(
        self, translator: Translator, group: NodeGroup, memo: dict[tuple[int, str], Resource]
    ) -> None:
        view = translator.view(group)
        resources: dict[str, list[Resource]] = {}
        for type_url, by_name in view.items():
            resources[type_url] = [
                _resource(name, message, memo) for name, message in by_name.items()
            ]
        try:
            self.cache.set_snapshot(group.name, Snapshot.build(resources))
        except InconsistentSnapshot as exc:
            self.stats.failures += 1
            event(log, logging.ERROR, "snapshot not published", group=group.name, error=exc.message)


def _resource(name: str, message: Message, memo: dict[tuple[int, str], Resource]) -> Resource:
    key = (id(message), name)
    found = memo.get(key)
    if found is None:
        found = memo[key] = Resource.of(name, message)
    return found
