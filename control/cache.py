"""The snapshot cache: immutable per-group snapshots, their versions, watches and diffs.

Modelled on go-control-plane's SnapshotCache. It never sees a stream: stream handlers
(sotw.py, delta.py) keep their subscription state in the small dataclasses below and
ask the pure functions `sotw_update` / `delta_update` what to send.

- A `Resource` is packed once (deterministic bytes); its version is a hash of those
  bytes. A type's version is a hash of its (name, version) pairs. Versions therefore
  depend on content alone: two replicas with the same registry serve the same versions,
  and a sidecar that reconnects to another replica sees nothing new.
- `set_snapshot` refuses an inconsistent snapshot (a cluster whose EDS resource is
  missing, a listener whose RDS route configuration is missing, a TLS context whose
  ADS secret is missing) and notifies a group's watchers only when a version changed.
- Watches are callbacks per group; they must be cheap and non-blocking (the stream
  handlers only record "a newer snapshot exists" and wake their writer).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from google.protobuf import any_pb2
from google.protobuf.message import Message

from gossamer.contract import xds
from gossamer.errors import LocalProtocolError

from .translate import references
from .translate.common import pack

FULL_STATE_TYPES = frozenset({xds.LISTENER, xds.CLUSTER})
WILDCARD = "*"


@dataclass(frozen=True, slots=True)
class Resource:
    name: str
    body: any_pb2.Any
    version: str
    message: Message

    @classmethod
    def of(cls, name: str, message: Message) -> Resource:
        body = pack(message)
        return cls(name, body, hashlib.sha256(body.value).hexdigest()[:16], message)


@dataclass(frozen=True)
class TypeSnapshot:
    version: str
    resources: Mapping[str, Resource]

    @classmethod
    def of(cls, resources: Iterable[Resource]) -> TypeSnapshot:
        by_name = {r.name: r for r in sorted(resources, key=lambda r: r.name)}
        digest = hashlib.sha256()
        for name, resource in by_name.items():
            digest.update(f"{name}\0{resource.version}\n".encode())
        return cls(digest.hexdigest()[:16], by_name)


EMPTY = TypeSnapshot.of(())


class InconsistentSnapshot(LocalProtocolError):
    """A snapshot refers to resources it does not contain."""


@dataclass(frozen=True)
class Snapshot:
    types: Mapping[str, TypeSnapshot]

    @classmethod
    def build(cls, resources: Mapping[str, Iterable[Resource]]) -> Snapshot:
        types = {t: TypeSnapshot.of(resources.get(t, ())) for t in xds.PUSH_ORDER}
        for t, items in resources.items():
            types.setdefault(t, TypeSnapshot.of(items))
        return cls(types)

    def get(self, type_url: str) -> TypeSnapshot:
        return self.types.get(type_url, EMPTY)

    def versions(self) -> dict[str, str]:
        return {t: s.version for t, s in self.types.items()}

    def consistency_errors(self) -> list[str]:
        """What this snapshot refers to but lacks, as readable sentences."""
        errors = []
        eds = self.get(xds.ENDPOINT).resources
        rds = self.get(xds.ROUTE).resources
        sds = self.get(xds.SECRET).resources
        for cluster in self.get(xds.CLUSTER).resources.values():
            wanted = references.cluster_eds_name(cluster.message)
            if wanted is not None and wanted not in eds:
                errors.append(f"cluster {cluster.name} needs ClusterLoadAssignment {wanted}")
            for secret in sorted(references.cluster_secrets(cluster.message) - sds.keys()):
                errors.append(f"cluster {cluster.name} needs secret {secret}")
        for listener in self.get(xds.LISTENER).resources.values():
            for route in sorted(references.listener_routes(listener.message) - rds.keys()):
                errors.append(f"listener {listener.name} needs RouteConfiguration {route}")
            for secret in sorted(references.listener_secrets(listener.message) - sds.keys()):
                errors.append(f"listener {listener.name} needs secret {secret}")
        return errors


SnapshotCallback = Callable[[Snapshot], None]


class SnapshotCache:
    """Snapshots by group name, with watchers notified on change."""

    def __init__(self) -> None:
        self._snapshots: dict[str, Snapshot] = {}
        self._watchers: dict[str, dict[int, SnapshotCallback]] = {}
        self._ids = itertools.count(1)

    def set_snapshot(self, group: str, snapshot: Snapshot) -> bool:
        """Publish; True if any type's version changed. Raises InconsistentSnapshot."""
        errors = snapshot.consistency_errors()
        if errors:
            raise InconsistentSnapshot(
                f"snapshot for {group} is inconsistent: " + "; ".join(errors)
            )
        previous = self._snapshots.get(group)
        if previous is not None and previous.versions() == snapshot.versions():
            return False
        self._snapshots[group] = snapshot
        for callback in list(self._watchers.get(group, {}).values()):
            callback(snapshot)
        return True

    def get(self, group: str) -> Snapshot | None:
        return self._snapshots.get(group)

    def groups(self) -> list[str]:
        return sorted(self._snapshots)

    def clear(self, group: str) -> None:
        self._snapshots.pop(group, None)

    def watch(self, group: str, callback: SnapshotCallback) -> Callable[[], None]:
        """Call `callback` with every new snapshot of `group` (and now, if one exists);
        returns the function that cancels the watch."""
        watch_id = next(self._ids)
        self._watchers.setdefault(group, {})[watch_id] = callback
        current = self._snapshots.get(group)
        if current is not None:
            callback(current)

        def cancel() -> None:
            watchers = self._watchers.get(group)
            if watchers is not None:
                watchers.pop(watch_id, None)
                if not watchers:
                    del self._watchers[group]

        return cancel

    def watched_groups(self) -> set[str]:
        return set(self._watchers)

    def watcher_count(self, group: str | None = None) -> int:
        if group is not None:
            return len(self._watchers.get(group, {}))
        return sum(len(w) for w in self._watchers.values())


# -- state of the world ------------------------------------------------------------
@dataclass
class SotwSubscription:
    """One type's subscription on a SotW stream and what was last sent for it."""

    wildcard: bool = False
    names: frozenset[str] = frozenset()
    sent: dict[str, str] = field(default_factory=dict)

    def covered(self, snapshot: TypeSnapshot) -> dict[str, Resource]:
        if self.wildcard:
            return dict(snapshot.resources)
        return {n: snapshot.resources[n] for n in sorted(self.names) if n in snapshot.resources}

    def mark_current(self, snapshot: TypeSnapshot) -> None:
        """Treat the client as holding what the snapshot has for it (reconnect at the
        current version, see the theory of operation in sotw.py)."""
        self.sent = {n: r.version for n, r in self.covered(snapshot).items()}


def sotw_update(
    type_url: str, snapshot: TypeSnapshot, sub: SotwSubscription
) -> list[Resource] | None:
    """What to send for one type now, or None when the client is up to date.

    Listener and Cluster responses carry the complete set the client subscribes to
    (absence means deletion); other types carry only resources that changed or were
    newly requested (xds_protocol.rst, "Grouping Resources into Responses")."""
    covered = sub.covered(snapshot)
    if type_url in FULL_STATE_TYPES:
        current = {n: r.version for n, r in covered.items()}
        if current == sub.sent:
            return None
        sub.sent = current
        return list(covered.values())
    changed = [r for n, r in covered.items() if sub.sent.get(n) != r.version]
    sub.sent = {n: r.version for n, r in covered.items()}
    return changed or None


# -- incremental -------------------------------------------------------------------
@dataclass
class DeltaSubscription:
    """One type's subscription on a delta stream and the versions the client holds."""

    wildcard: bool = False
    names: set[str] = field(default_factory=set)
    known: dict[str, str] = field(default_factory=dict)
    told_absent: set[str] = field(default_factory=set)
    force_removed: set[str] = field(default_factory=set)

    def wants(self, name: str) -> bool:
        return self.wildcard or name in self.names


def delta_update(
    snapshot: TypeSnapshot, sub: DeltaSubscription
) -> tuple[list[Resource], list[str]]:
    """Resources to send and names to remove, updating what the client is known to hold.

    Sent: every wanted resource whose version differs from the client's. Removed: names
    the client holds that no longer exist, and explicitly requested names that do not
    exist (once), so the client need not wait for a timeout (xds_protocol.rst,
    "Knowing When a Requested Resource Does Not Exist")."""
    updates = [
        r for n, r in snapshot.resources.items() if sub.wants(n) and sub.known.get(n) != r.version
    ]
    removed = sorted(n for n in sub.known if n not in snapshot.resources)
    for name in sorted(sub.names):
        if name not in snapshot.resources and name not in sub.known and name not in sub.told_absent:
            removed.append(name)
    for name in sorted(sub.force_removed):
        if name not in removed and name not in snapshot.resources:
            removed.append(name)
    sub.force_removed.clear()
    for resource in updates:
        sub.known[resource.name] = resource.version
        sub.told_absent.discard(resource.name)
    for name in removed:
        sub.known.pop(name, None)
        if name in sub.names:
            sub.told_absent.add(name)
    return updates, removed
