"""The embedded registry store: in-process state, persisted to one JSON file.

The default store: one control plane on one machine needs nothing else. State lives
in dictionaries owned by the event loop; every write is applied synchronously (so
writes never interleave), gets the next revision, is appended to a bounded change log
(`changelog.ChangeLog`) that feeds the watchers, and, when it changes static state, is
written to `registry.json` with write+fsync+rename (`snapshot_file`) before the write
returns. Lease-owned endpoints are kept in memory only: after a restart they are gone
until their sidecars register again, while static services and endpoints come back.

Leases expire on an injected monotonic clock: a background task ends every lease
whose deadline has passed (`expire_leases()` does one pass, for tests with a fake
clock). An `fcntl` lock beside the file keeps a second process from writing it too.

Revisions continue from the last one persisted; they order changes within one run of
the process (watchers are in-process), not across restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from gossamer.contract.identity import ServiceKey
from gossamer.contract.vocabulary import Health
from gossamer.discovery import snapshot_file
from gossamer.discovery.changelog import DEFAULT_MAX_EVENTS, ChangeLog
from gossamer.discovery.model import Endpoint, Event, EventKind, RegistryState, Service
from gossamer.discovery.store import Store, StoreUnavailable
from gossamer.errors import ConfigError, GossamerError, NotFound, UsageError

EndpointKey = tuple[ServiceKey, str]
LEASE_SWEEP_INTERVAL = 0.25


@dataclass
class _Lease:
    ttl: float
    deadline: float
    endpoints: set[EndpointKey] = field(default_factory=set)


def lease_owner(lease: int) -> str:
    """The owner string of endpoints held by `lease`."""
    return f"lease:{lease}"


def check_owner(endpoint: Endpoint, lease: int | None) -> None:
    """An endpoint's owner must say which lease holds it (or be static)."""
    if lease is None and endpoint.owner.startswith("lease:"):
        raise ConfigError(
            f"owner {endpoint.owner!r} names a lease but no lease was given", field="owner"
        )
    if lease is not None and endpoint.owner != lease_owner(lease):
        raise ConfigError(
            f"owner must be {lease_owner(lease)!r} for an endpoint held by lease {lease}, "
            f"got {endpoint.owner!r}",
            field="owner",
        )


def duplicate_error(existing: Endpoint) -> ConfigError:
    return ConfigError(
        f"instance id {existing.instance_id!r} of service {existing.service} is already "
        f"registered by {existing.owner}",
        field="instance_id",
        hint="every instance of a service needs its own instance id",
    )


class EmbeddedStore(Store):
    """In-process store; `path=None` keeps everything in memory (tests, benchmarks)."""

    def __init__(
        self,
        path: Path | None,
        *,
        max_log_events: int = DEFAULT_MAX_EVENTS,
        clock: Callable[[], float] = time.monotonic,
        read_only: bool = False,
        sweep_interval: float = LEASE_SWEEP_INTERVAL,
    ) -> None:
        self.path = path
        self.read_only = read_only
        self._clock = clock
        self._max_log_events = max_log_events
        self._sweep_interval = sweep_interval
        self._services: dict[ServiceKey, Service] = {}
        self._endpoints: dict[EndpointKey, Endpoint] = {}
        self._endpoint_lease: dict[EndpointKey, int] = {}
        self._leases: dict[int, _Lease] = {}
        self._lease_ids = itertools.count(secrets.randbelow(1 << 40) + 1)
        self._revision = 0
        self._log = ChangeLog(max_log_events)
        self._open = False
        self._lock_fd: int | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._lease_changed = asyncio.Event()
        self._persist_lock = asyncio.Lock()
        self._dirty_revision = 0  # newest revision that changed static state
        self._persisted_revision = 0

    # -- life cycle ----------------------------------------------------------------
    async def start(self) -> None:
        if self._open:
            return
        if self.path is not None:
            self._open_file(self.path)
        self._log = ChangeLog(self._max_log_events, start_revision=self._revision)
        self._open = True
        if not self.read_only:
            self._sweeper = asyncio.create_task(self._sweep_leases(), name="lease-sweeper")

    def _open_file(self, path: Path) -> None:
        if not self.read_only:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                raise GossamerError(f"cannot create the registry file {path}: {exc}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise GossamerError(
                    f"the registry file {path} is in use by another process",
                    hint="stop the other control plane, or give this one its own data dir",
                ) from None
            self._lock_fd = fd
            snapshot_file.remove_stale_temporaries(path.parent)
        snap = snapshot_file.read(path)
        if snap is not None:
            self._revision = self._persisted_revision = snap.revision
            self._services = {s.key: s for s in snap.services}
            self._endpoints = {(e.service, e.instance_id): e for e in snap.endpoints}

    async def close(self) -> None:
        if not self._open:
            return
        self._open = False
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        self._log.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _check_writable(self) -> None:
        if not self._open:
            raise StoreUnavailable("the embedded registry store is closed")
        if self.read_only:
            raise UsageError("the registry store is open read-only")

    # -- reads ---------------------------------------------------------------------
    async def state(self) -> RegistryState:
        return self.snapshot()

    def snapshot(self) -> RegistryState:
        """The state now, without awaiting (the store's own loop only)."""
        return RegistryState(self._revision, dict(self._services), dict(self._endpoints))

    async def get_endpoint(self, key: ServiceKey, instance_id: str) -> Endpoint | None:
        return self._endpoints.get((key, instance_id))

    @property
    def revision(self) -> int:
        return self._revision

    # -- writes --------------------------------------------------------------------
    def _commit(self, build: Callable[[int], list[Event]], *, static: bool) -> int:
        self._revision += 1
        revision = self._revision
        self._log.append(revision, build(revision))
        if static:
            self._dirty_revision = revision
        return revision

    async def put_service(self, service: Service) -> int:
        self._check_writable()
        self._services[service.key] = service
        rev = self._commit(
            lambda r: [Event(EventKind.PUT_SERVICE, r, service=service, key=service.key)],
            static=True,
        )
        await self._persist()
        return rev

    async def delete_service(self, key: ServiceKey) -> int:
        self._check_writable()
        if key not in self._services:
            raise NotFound(f"no service {key} in the registry")
        doomed = sorted(
            ek for ek in self._endpoints if ek[0] == key and ek not in self._endpoint_lease
        )
        for ek in doomed:
            del self._endpoints[ek]
        del self._services[key]

        def build(r: int) -> list[Event]:
            events = [
                Event(EventKind.DELETE_ENDPOINT, r, key=key, instance_id=iid) for _, iid in doomed
            ]
            events.append(Event(EventKind.DELETE_SERVICE, r, key=key))
            return events

        rev = self._commit(build, static=True)
        await self._persist()
        return rev

    async def put_endpoint(
        self, endpoint: Endpoint, *, lease: int | None = None, replacing: str | None = None
    ) -> int:
        self._check_writable()
        check_owner(endpoint, lease)
        if lease is not None:
            self._live_lease(lease)
        ek = (endpoint.service, endpoint.instance_id)
        existing = self._endpoints.get(ek)
        if existing is not None and existing.owner not in (endpoint.owner, replacing):
            raise duplicate_error(existing)
        previous = self._endpoint_lease.pop(ek, None)
        if previous is not None and previous != lease and previous in self._leases:
            self._leases[previous].endpoints.discard(ek)
        self._endpoints[ek] = endpoint
        if lease is not None:
            self._endpoint_lease[ek] = lease
            self._leases[lease].endpoints.add(ek)
        rev = self._commit(
            lambda r: [
                Event(
                    EventKind.PUT_ENDPOINT,
                    r,
                    endpoint=endpoint,
                    key=endpoint.service,
                    instance_id=endpoint.instance_id,
                )
            ],
            static=lease is None,
        )
        await self._persist()
        return rev

    async def delete_endpoint(self, key: ServiceKey, instance_id: str) -> int:
        self._check_writable()
        ek = (key, instance_id)
        if ek not in self._endpoints:
            raise NotFound(f"no endpoint {instance_id!r} of service {key} in the registry")
        del self._endpoints[ek]
        lease = self._endpoint_lease.pop(ek, None)
        if lease is not None and lease in self._leases:
            self._leases[lease].endpoints.discard(ek)
        rev = self._commit(
            lambda r: [Event(EventKind.DELETE_ENDPOINT, r, key=key, instance_id=instance_id)],
            static=lease is None,
        )
        await self._persist()
        return rev

    async def set_health(self, key: ServiceKey, instance_id: str, health: Health) -> int:
        self._check_writable()
        health = Health(health)
        ek = (key, instance_id)
        existing = self._endpoints.get(ek)
        if existing is None:
            raise NotFound(f"no endpoint {instance_id!r} of service {key} in the registry")
        updated = replace(existing, health=health)
        self._endpoints[ek] = updated
        rev = self._commit(
            lambda r: [
                Event(EventKind.PUT_ENDPOINT, r, endpoint=updated, key=key, instance_id=instance_id)
            ],
            static=ek not in self._endpoint_lease,
        )
        await self._persist()
        return rev

    # -- leases --------------------------------------------------------------------
    async def grant_lease(self, ttl: float) -> int:
        self._check_writable()
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or ttl <= 0:
            raise ConfigError(
                f"lease ttl must be a positive number of seconds, got {ttl!r}", field="ttl"
            )
        lease = next(self._lease_ids)
        self._leases[lease] = _Lease(float(ttl), self._clock() + ttl)
        self._lease_changed.set()
        return lease

    def _live_lease(self, lease: int) -> _Lease:
        state = self._leases.get(lease)
        if state is not None and state.deadline <= self._clock():
            self._revoke(lease)
            state = None
        if state is None:
            raise NotFound(f"lease {lease} has expired or never existed")
        return state

    async def keep_alive(self, lease: int) -> None:
        self._check_writable()
        state = self._live_lease(lease)
        state.deadline = self._clock() + state.ttl

    async def revoke_lease(self, lease: int) -> int:
        self._check_writable()
        if lease not in self._leases:
            raise NotFound(f"lease {lease} has expired or never existed")
        return self._revoke(lease)

    def _revoke(self, lease: int) -> int:
        state = self._leases.pop(lease)
        doomed = sorted(state.endpoints)
        if not doomed:
            return self._revision
        for ek in doomed:
            self._endpoints.pop(ek, None)
            self._endpoint_lease.pop(ek, None)
        return self._commit(
            lambda r: [
                Event(EventKind.DELETE_ENDPOINT, r, key=k, instance_id=iid) for k, iid in doomed
            ],
            static=False,
        )

    def expire_leases(self) -> list[int]:
        """End every lease whose deadline has passed; returns their ids."""
        now = self._clock()
        expired = [lid for lid, st in self._leases.items() if st.deadline <= now]
        for lid in expired:
            self._revoke(lid)
        return expired

    async def _sweep_leases(self) -> None:
        while self._open:
            self.expire_leases()
            delay = self._sweep_interval
            if self._leases:
                soonest = min(st.deadline for st in self._leases.values())
                delay = min(delay, max(soonest - self._clock(), 0.005))
            self._lease_changed.clear()
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._lease_changed.wait()

    # -- persistence ---------------------------------------------------------------
    async def _persist(self) -> None:
        """Write static state to the file if it changed since the last write."""
        if self.path is None:
            return
        async with self._persist_lock:
            if self._persisted_revision >= self._dirty_revision:
                return  # a write that finished while we waited already covered ours
            revision = self._revision
            static = [e for ek, e in self._endpoints.items() if ek not in self._endpoint_lease]
            data = snapshot_file.encode(revision, self._services.values(), static)
            try:
                await asyncio.to_thread(snapshot_file.write_atomic, self.path, data)
            except OSError as exc:
                raise StoreUnavailable(
                    f"cannot write the registry file {self.path}: {exc}",
                    hint="check free space and permissions of the data directory",
                ) from None
            self._persisted_revision = revision

    # -- watch ---------------------------------------------------------------------
    def watch(self, from_revision: int) -> AsyncIterator[Event]:
        if not self._open:
            raise StoreUnavailable("the embedded registry store is not open")
        return self._watch(from_revision, self._log)

    async def _watch(self, from_revision: int, log: ChangeLog) -> AsyncIterator[Event]:
        cursor = from_revision
        while True:
            batch = log.since(cursor)
            if batch is None:
                state = self.snapshot()
                yield Event(EventKind.RESYNC, state.revision, state=state)
                cursor = state.revision
                continue
            if batch:
                for event in batch:
                    yield event
                cursor = batch[-1].revision
                continue
            if log.closed:
                return
            await log.wait_beyond(cursor)
