"""The store interface every registry backend implements (embedded, etcd).

Contract (checked by one contract test suite run against every store):
- Each successful write returns the store revision it produced; revisions only grow.
- `watch(from_revision=R)` yields every change with revision > R, in order, then follows
  new changes. If the changes after R are no longer available (the watcher fell too far
  behind, or etcd compacted them), it yields one RESYNC event carrying the whole state
  and continues from there: never a silent gap.
- Lease-owned endpoints disappear when their lease is revoked or expires.
- Writing an endpoint whose instance id already belongs to another owner is rejected.
- One write is one revision; a write that changes several keys (delete_service, a
  lease ending) yields several events carrying the same revision.
- Deleting or updating something that does not exist raises NotFound.
- PUT events carry the new Service/Endpoint; DELETE events carry only `key` (and
  `instance_id`). Every event but RESYNC carries `key`.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator

from gossamer.contract.identity import ServiceKey
from gossamer.contract.vocabulary import Health
from gossamer.discovery.model import Endpoint, Event, RegistryState, Service
from gossamer.errors import GossamerError


class StoreUnavailable(GossamerError):
    """The store cannot be reached (etcd down) or used (file unwritable) right now.

    Writes that raise it may be retried; nothing already acknowledged is lost."""

    hint = "check that the registry store (etcd) is running and reachable"


class Store(abc.ABC):
    """A registry backend. All methods are coroutines safe to call from one event loop."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Open files or connections; raise a GossamerError if that is impossible."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release everything; watches end."""

    @abc.abstractmethod
    async def state(self) -> RegistryState:
        """The whole registry and the revision it was read at."""

    async def get_endpoint(self, key: ServiceKey, instance_id: str) -> Endpoint | None:
        """One endpoint, or None (stores override this with a cheaper read)."""
        return (await self.state()).endpoints.get((key, instance_id))

    @abc.abstractmethod
    async def put_service(self, service: Service) -> int: ...

    @abc.abstractmethod
    async def delete_service(self, key: ServiceKey) -> int:
        """Delete a service and its static endpoints."""

    @abc.abstractmethod
    async def put_endpoint(
        self, endpoint: Endpoint, *, lease: int | None = None, replacing: str | None = None
    ) -> int:
        """Create or replace an endpoint; with `lease`, it lives as long as the lease.

        An endpoint held by another owner is a duplicate (ConfigError on `instance_id`),
        unless that owner is `replacing`: then it changes hands in one write, so watchers
        see one update, never a delete then a put (a sidecar that moved to another
        replica takes its instance over from its old lease), and the old owner's lease
        no longer holds it."""

    @abc.abstractmethod
    async def delete_endpoint(self, key: ServiceKey, instance_id: str) -> int: ...

    @abc.abstractmethod
    async def set_health(self, key: ServiceKey, instance_id: str, health: Health) -> int: ...

    @abc.abstractmethod
    async def grant_lease(self, ttl: float) -> int:
        """A new lease id that expires `ttl` seconds after its last keep-alive."""

    @abc.abstractmethod
    async def keep_alive(self, lease: int) -> None:
        """Refresh a lease; raises NotFound if it has already expired."""

    @abc.abstractmethod
    async def revoke_lease(self, lease: int) -> int:
        """End a lease now, deleting what it owns."""

    @abc.abstractmethod
    def watch(self, from_revision: int) -> AsyncIterator[Event]:
        """Changes after `from_revision`, in order, forever (until close)."""
