"""The registry facade the control plane calls: static sync, registrations, watches.

- `sync_static(services, endpoints)` makes the store's static content equal to what
  mesh.yaml declares: adds, updates (keeping the health the control plane observed),
  removes what the file no longer has. Lease-owned endpoints are never touched.
- `register(endpoint, ttl)` grants a lease, writes the endpoint owned by it and keeps
  the lease alive from a background task (every ttl/3) until `Registration.close()`.
  If the lease is lost anyway (the store was unreachable for longer than the ttl), the
  registration registers again under a new lease as soon as the store answers: a live
  sidecar stream never silently disappears from the registry.
- `watch` and `state` pass through to the store.
- `leave_leases()`: from then on, a registration that closes stops its keep-alives but
  leaves its lease to run out. A control-plane replica that shuts down with a store
  other replicas share calls it first: its sidecars move to another replica within a
  second and take their instances over from these leases in one write, so callers never
  see them missing; a sidecar that went away for good leaves within the lease TTL.

Validation errors are `ConfigError`s naming the field.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace

from gossamer.contract.identity import ServiceKey
from gossamer.contract.vocabulary import Health
from gossamer.discovery.embedded import lease_owner
from gossamer.discovery.model import STATIC_OWNER, Endpoint, Event, RegistryState, Service
from gossamer.discovery.store import Store, StoreUnavailable
from gossamer.errors import ConfigError, GossamerError, NotFound
from gossamer.logs import event

log = logging.getLogger(__name__)
MIN_KEEPALIVE_INTERVAL = 0.05


@dataclass(frozen=True)
class SyncReport:
    added: int = 0
    updated: int = 0
    removed: int = 0
    revision: int = 0


def _same_static(a: Endpoint, b: Endpoint) -> bool:
    """Equal apart from health, which the control plane may have changed since."""
    return replace(a, health=b.health) == b


class Registry:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._registrations: set[Registration] = set()
        self.leaving_leases = False

    def leave_leases(self) -> None:
        """Closing registrations leave their leases to expire instead of revoking them."""
        self.leaving_leases = True

    async def state(self) -> RegistryState:
        return await self.store.state()

    def watch(self, from_revision: int) -> AsyncIterator[Event]:
        return self.store.watch(from_revision)

    # -- static services ---------------------------------------------------------
    async def sync_static(
        self, services: Sequence[Service], endpoints: Sequence[Endpoint]
    ) -> SyncReport:
        wanted_services = {s.key: s for s in services}
        if len(wanted_services) != len(services):
            raise ConfigError("a service is listed twice", field="services")
        wanted: dict[tuple[ServiceKey, str], Endpoint] = {}
        for e in endpoints:
            if e.owner != STATIC_OWNER:
                raise ConfigError(f"static endpoints are owned by {STATIC_OWNER!r}", field="owner")
            if e.service not in wanted_services:
                raise ConfigError(f"endpoint of unknown service {e.service}", field="service")
            if (e.service, e.instance_id) in wanted:
                raise ConfigError(
                    f"instance id {e.instance_id!r} is listed twice for {e.service}",
                    field="instance_id",
                )
            wanted[(e.service, e.instance_id)] = e
        state = await self.store.state()
        for k, e in wanted.items():  # check every conflict before writing anything
            current = state.endpoints.get(k)
            if current is not None and current.owner != STATIC_OWNER:
                raise ConfigError(
                    f"instance id {e.instance_id!r} of {e.service} is registered by "
                    f"{current.owner}; a static endpoint cannot take it over",
                    field="instance_id",
                )
        added = updated = removed = 0
        revision = state.revision
        for key, service in wanted_services.items():
            if state.services.get(key) != service:
                revision = await self.store.put_service(service)
                added, updated = (
                    (added + 1, updated) if key not in state.services else (added, updated + 1)
                )
        for k, e in wanted.items():
            current = state.endpoints.get(k)
            if current is None:
                revision = await self.store.put_endpoint(e)
                added += 1
            elif not _same_static(current, e):
                revision = await self.store.put_endpoint(replace(e, health=current.health))
                updated += 1
        for (skey, iid), current in state.endpoints.items():
            if current.owner == STATIC_OWNER and (skey, iid) not in wanted:
                with contextlib.suppress(NotFound):
                    revision = await self.store.delete_endpoint(skey, iid)
                    removed += 1
        for key in state.services:
            if key not in wanted_services:
                with contextlib.suppress(NotFound):
                    revision = await self.store.delete_service(key)
                    removed += 1
        report = SyncReport(added, updated, removed, revision)
        event(log, logging.INFO, "static services synced", **report.__dict__)
        return report

    # -- registrations -----------------------------------------------------------
    async def register(
        self, endpoint: Endpoint, ttl: float, *, takeover: bool = False
    ) -> Registration:
        """Register a sidecar's instance under a new lease of `ttl` seconds.

        An instance id already held by another owner is a ConfigError, unless
        `takeover` is set and the holder is another lease (a sidecar that reconnected
        before its old lease ran out): the instance then passes to the new lease in one
        write, and the old lease is revoked (best effort: it holds nothing any more).
        """
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or ttl <= 0:
            raise ConfigError(f"ttl must be a positive number of seconds, got {ttl!r}", field="ttl")
        lease, owned, revision = await self._claim(endpoint, ttl, takeover=takeover)
        registration = Registration(self, owned, lease, float(ttl), revision)
        self._registrations.add(registration)
        registration.start()
        return registration

    async def _claim(
        self, endpoint: Endpoint, ttl: float, *, takeover: bool
    ) -> tuple[int, Endpoint, int]:
        lease = await self.store.grant_lease(ttl)
        owned = replace(endpoint, owner=lease_owner(lease))
        try:
            try:
                revision = await self.store.put_endpoint(owned, lease=lease)
            except ConfigError as exc:
                if exc.field != "instance_id" or not takeover:
                    raise
                holder = await self.store.get_endpoint(endpoint.service, endpoint.instance_id)
                if holder is None or not holder.owner.startswith("lease:"):
                    raise
                # one write hands the instance over (callers never see it missing), then
                # the old lease ends holding nothing
                revision = await self.store.put_endpoint(owned, lease=lease, replacing=holder.owner)
                # a failure here must not undo the takeover: the old lease runs out
                with contextlib.suppress(GossamerError):
                    await self.store.revoke_lease(int(holder.owner.removeprefix("lease:")))
        except BaseException:
            with contextlib.suppress(GossamerError):
                await self.store.revoke_lease(lease)
            raise
        return lease, owned, revision

    async def close(self) -> None:
        """Deregister everything still registered."""
        for registration in list(self._registrations):
            await registration.close()


class Registration:
    """One registered instance; alive until `close()`."""

    def __init__(
        self, registry: Registry, endpoint: Endpoint, lease: int, ttl: float, revision: int
    ) -> None:
        self._registry = registry
        self._store = registry.store
        self.endpoint = endpoint
        self.lease = lease
        self.ttl = ttl
        self.revision = revision
        self.renewals = 0  # how many times the lease was lost and the instance re-registered
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def start(self) -> None:
        self._task = asyncio.create_task(self._keep_alive(), name=f"lease-{self.lease}")

    async def set_health(self, health: Health) -> int:
        """Record the health the sidecar observes; returns the store revision."""
        if self._closed:
            raise GossamerError("this registration is closed")
        self.endpoint = replace(self.endpoint, health=Health(health))
        try:
            self.revision = await self._store.set_health(
                self.endpoint.service, self.endpoint.instance_id, self.endpoint.health
            )
        except NotFound:
            await self._renew()  # the lease was lost: register again, with this health
        return self.revision

    async def close(self, *, deregister: bool = False) -> None:
        """Stop the keep-alives and revoke the lease (deleting the endpoint); after
        `Registry.leave_leases()` leave the lease to run out instead, unless the sidecar
        itself asked to leave (`deregister`)."""
        if self._closed:
            return
        self._closed = True
        self._registry._registrations.discard(self)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._registry.leaving_leases and not deregister:
            return
        try:
            await self._store.revoke_lease(self.lease)
        except NotFound:
            pass
        except StoreUnavailable as exc:
            # the lease still ends by itself within its ttl
            event(
                log, logging.WARNING, "deregistration deferred to lease expiry", error=exc.message
            )

    async def _renew(self) -> None:
        old = self.lease
        self.lease, self.endpoint, self.revision = await self._registry._claim(
            self.endpoint, self.ttl, takeover=False
        )
        self.renewals += 1
        event(log, logging.WARNING, "lease lost, registered again", old_lease=old, lease=self.lease)

    async def _keep_alive(self) -> None:
        interval = max(self.ttl / 3, MIN_KEEPALIVE_INTERVAL)
        while not self._closed:
            await asyncio.sleep(interval)
            try:
                await self._store.keep_alive(self.lease)
            except NotFound:
                try:
                    await self._renew()
                except StoreUnavailable as exc:
                    event(
                        log, logging.WARNING, "re-registration failed, retrying", error=exc.message
                    )
                except ConfigError as exc:
                    event(
                        log,
                        logging.ERROR,
                        "instance id taken, registration lost",
                        error=exc.message,
                    )
                    return
            except StoreUnavailable as exc:
                event(log, logging.WARNING, "lease keep-alive failed, retrying", error=exc.message)
