"""The etcd registry store: several control-plane replicas share one registry.

Uses `aetcd` (asyncio gRPC client of etcd v3) over one channel to all the cluster's
members (`ipv4:a:p,b:q` target, gRPC's pick_first: when the member in use dies the
channel moves to the next). The key layout is in `etcd_keys`.

Theory of operation:
- Revisions are etcd's own store revisions (they also count writes outside our prefix,
  so they grow but are not consecutive). A write that touches several keys is one etcd
  transaction, hence one revision.
- Updates are compare-and-set transactions: an endpoint is created only if its key does
  not exist (create_revision == 0) and replaced only if it has not changed since it was
  read (mod_revision), so two replicas never overwrite each other's registrations.
- Lease-owned endpoints are attached to etcd leases; etcd deletes them when the lease
  is revoked or expires, which the watch reports like any other delete.
- Watches (`etcd_watch`): one shared etcd watch feeds a local change log that every
  watcher reads; a watcher older than the log replays etcd's history first. Broken
  streams reopen from the last revision delivered; compacted history means RESYNC.
- Calls that fail because etcd is unreachable are retried with exponential backoff and
  jitter for up to `retry_timeout`, then raise `StoreUnavailable`. A write that failed
  in flight may have been applied; retrying it is safe because every write here is
  idempotent or guarded by a compare.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any, TypeVar

import aetcd
import aetcd.exceptions as ax
import grpc
from aetcd import rpc

from gossamer.contract.identity import ServiceKey
from gossamer.contract.vocabulary import Health
from gossamer.discovery import etcd_keys as ek
from gossamer.discovery.changelog import DEFAULT_MAX_EVENTS
from gossamer.discovery.embedded import check_owner, duplicate_error
from gossamer.discovery.etcd_watch import WatchCache
from gossamer.discovery.model import (
    STATIC_OWNER,
    Endpoint,
    Event,
    EventKind,
    RegistryState,
    Service,
)
from gossamer.discovery.store import Store, StoreUnavailable
from gossamer.errors import ConfigError, GossamerError, NotFound
from gossamer.logs import event

log = logging.getLogger(__name__)
T = TypeVar("T")

CHANNEL_OPTIONS = {
    # reconnect quickly after an outage (gRPC's default backoff grows to 120 s)
    "grpc.initial_reconnect_backoff_ms": 100,
    "grpc.min_reconnect_backoff_ms": 100,
    "grpc.max_reconnect_backoff_ms": 2000,
    # notice a silently dead member (etcd allows pings every 5 s or more)
    "grpc.keepalive_time_ms": 10_000,
    "grpc.keepalive_timeout_ms": 5_000,
}
MAX_CAS_ATTEMPTS = 20


class _Retry(Exception):
    """etcd was unreachable or busy: worth trying again."""


def grpc_target(endpoints: Sequence[tuple[str, int]]) -> str:
    """One gRPC target naming every member: `ipv4:a:p,b:q` or `ipv6:[a]:p,...`."""
    if not endpoints:
        raise ConfigError("no etcd endpoints given", field="store")
    v6 = [":" in host for host, _ in endpoints]
    if all(v6):
        return "ipv6:" + ",".join(f"[{h}]:{p}" for h, p in endpoints)
    if any(v6):
        raise ConfigError("etcd endpoints mix IPv4 and IPv6 addresses", field="store")
    return "ipv4:" + ",".join(f"{h}:{p}" for h, p in endpoints)


def _translate(exc: BaseException) -> BaseException:
    """An aetcd/gRPC error as _Retry, NotFound or a GossamerError."""
    if isinstance(exc, ax.ConnectionFailedError | ax.ConnectionTimeoutError | ax.WatchTimeoutError):
        return _Retry(str(exc))
    if isinstance(exc, grpc.aio.AioRpcError):
        code, details = exc.code(), exc.details() or ""
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            return _Retry(details)
        if code == grpc.StatusCode.NOT_FOUND:
            return NotFound(details)
        return GossamerError(f"etcd refused the request: {details}")
    text = str(exc)
    if "lease not found" in text:
        return NotFound("the lease has expired or never existed")
    if "leader changed" in text or "no leader" in text or "timed out" in text:
        return _Retry(text)
    return GossamerError(f"etcd refused the request: {text}")


def _static_or_junk(value: bytes) -> bool:
    """Whether delete_service takes this lease-less record along (malformed ones too)."""
    try:
        return ek.decode_endpoint(value).owner == STATIC_OWNER
    except (ValueError, KeyError, TypeError, ConfigError):
        return True


class EtcdStore(Store):
    """Registry in etcd under `prefix`."""

    def __init__(
        self,
        endpoints: Sequence[tuple[str, int]],
        *,
        prefix: str = ek.DEFAULT_PREFIX,
        rpc_timeout: float = 5.0,
        retry_timeout: float = 10.0,
        backoff: tuple[float, float] = (0.05, 1.0),
        rng: random.Random | None = None,
        max_log_events: int = DEFAULT_MAX_EVENTS,
    ) -> None:
        self.endpoints = list(endpoints)
        self.layout = ek.KeyLayout(prefix)
        self._target = grpc_target(self.endpoints)
        self._rpc_timeout = rpc_timeout
        self.retry_timeout = retry_timeout
        self._backoff = backoff
        self._rng = rng or random.Random()
        self._max_log_events = max_log_events
        self._client: Any = None
        self._watches: WatchCache | None = None
        self._closed = asyncio.Event()

    def __repr__(self) -> str:
        return f"EtcdStore({self._target}, prefix={self.layout.prefix!r})"

    @property
    def where(self) -> str:
        return ",".join(f"{h}:{p}" for h, p in self.endpoints)

    # -- life cycle ----------------------------------------------------------------
    async def start(self) -> None:
        if self._client is not None:
            return
        host, _, port = self._target.rpartition(":")  # aetcd joins them back with ':'
        self._client = aetcd.Client(
            host=host, port=int(port), timeout=self._rpc_timeout, options=CHANNEL_OPTIONS
        )
        self._closed.clear()
        try:
            await self.call("connect", lambda: self.client.get(self.layout.root))
        except BaseException:
            client, self._client = self._client, None
            await client.close()
            raise
        self._watches = WatchCache(
            lambda: self.client.channel,
            self.layout,
            self._resync,
            self._delays,
            max_events=self._max_log_events,
        )

    async def close(self) -> None:
        self._closed.set()
        if self._watches is not None:
            await self._watches.close()
            self._watches = None
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    @property
    def client(self) -> Any:
        if self._client is None:
            raise StoreUnavailable("the etcd registry store is not started")
        return self._client

    # -- retries -------------------------------------------------------------------
    def _delays(self) -> Callable[[], float]:
        current = self._backoff[0]

        def next_delay() -> float:
            nonlocal current
            delay = current * self._rng.uniform(0.5, 1.0)
            current = min(current * 2, self._backoff[1])
            return delay

        return next_delay

    async def call(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Run one etcd call, retrying while etcd is unreachable, up to retry_timeout
        (also for the control plane's other shared state: control/etcd_security.py)."""
        deadline = time.monotonic() + self.retry_timeout
        next_delay = self._delays()
        attempt = 0
        while True:
            try:
                return await fn()
            except (ax.ClientError, grpc.aio.AioRpcError) as exc:
                err = _translate(exc)
            if not isinstance(err, _Retry):
                raise err from None
            attempt += 1
            left = deadline - time.monotonic()
            if left <= 0 or self._closed.is_set():
                raise StoreUnavailable(
                    f"etcd at {self.where} is unreachable ({what} failed after {attempt} "
                    f"attempts over {self.retry_timeout:g}s): {err}"
                ) from None
            event(log, logging.DEBUG, "etcd call failed, retrying", op=what, error=str(err))
            # the last wait ends at the deadline, for one more try: the retries span
            # retry_timeout, not up to one backoff step less
            await asyncio.sleep(min(next_delay(), left))

    async def txn(self, compare: list[Any], success: list[Any]) -> tuple[bool, Any]:
        """One transaction, not retried (wrap it in `call`); keeps the response header."""
        request = rpc.TxnRequest(compare=[c.build_message() for c in compare], success=success)
        response = await self.client.kvstub.Txn(request, timeout=self._rpc_timeout)
        return bool(response.succeeded), response

    # -- reads ---------------------------------------------------------------------
    async def state(self) -> RegistryState:
        result = await self.call("read", lambda: self.client.get_prefix(self.layout.root))
        state, skipped = ek.decode_state(
            self.layout, result.header.revision, ((kv.key, kv.value) for kv in result.kvs)
        )
        if skipped:
            event(log, logging.WARNING, "ignored foreign keys under the prefix", keys=skipped[:10])
        return state

    async def get_endpoint(self, key: ServiceKey, instance_id: str) -> Endpoint | None:
        current = await self._get(self.layout.endpoint(key, instance_id))
        return None if current is None else ek.decode_endpoint(current.value)

    async def _get(self, key: bytes) -> Any:
        return await self.call("read", lambda: self.client.get(key))

    # -- writes --------------------------------------------------------------------
    async def put_service(self, service: Service) -> int:
        value = ek.encode_service(service)
        result = await self.call(
            "put service", lambda: self.client.put(self.layout.service(service.key), value)
        )
        return int(result.header.revision)

    async def delete_service(self, key: ServiceKey) -> int:
        t = self.client.transactions
        skey = self.layout.service(key)
        prefix = self.layout.endpoints_of(key)
        for _ in range(MAX_CAS_ATTEMPTS):
            current = await self._get(skey)
            if current is None:
                raise NotFound(f"no service {key} in the registry")
            eps = await self.call("read", lambda: self.client.get_prefix(prefix))
            static = [kv.key for kv in eps.kvs if kv.lease == 0 and _static_or_junk(kv.value)]
            compare = [
                t.mod(skey) == current.mod_revision,
                # nothing under the endpoints prefix changed since we read it
                t.mod(prefix, range_end=aetcd.utils.prefix_range_end(prefix))
                < eps.header.revision + 1,
            ]
            ops = [
                rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=k)) for k in static
            ]
            ops.append(rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=skey)))
            ok, response = await self.call(
                "delete service", functools.partial(self.txn, compare, ops)
            )
            if ok:
                return int(response.header.revision)
        raise StoreUnavailable(f"delete of service {key} kept conflicting with other writers")

    async def put_endpoint(
        self, endpoint: Endpoint, *, lease: int | None = None, replacing: str | None = None
    ) -> int:
        check_owner(endpoint, lease)
        key = self.layout.endpoint(endpoint.service, endpoint.instance_id)
        value = ek.encode_endpoint(endpoint)
        put = rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=value, lease=lease or 0))
        t = self.client.transactions
        for _ in range(MAX_CAS_ATTEMPTS):
            current = await self._get(key)
            if current is None:
                guard = t.create(key) == 0
            else:
                existing = ek.decode_endpoint(current.value)
                if existing.owner not in (endpoint.owner, replacing):
                    raise duplicate_error(existing)
                # a put attaches the key to the new lease (or to none) and detaches it
                # from the old one, whose revocation then leaves it alone
                guard = t.mod(key) == current.mod_revision
            ok, response = await self.call(
                "put endpoint", functools.partial(self.txn, [guard], [put])
            )
            if ok:
                return int(response.header.revision)
        raise StoreUnavailable(f"put of endpoint {endpoint.instance_id!r} kept conflicting")

    async def delete_endpoint(self, key: ServiceKey, instance_id: str) -> int:
        result = await self.call(
            "delete endpoint", lambda: self.client.delete(self.layout.endpoint(key, instance_id))
        )
        if result is None:
            raise NotFound(f"no endpoint {instance_id!r} of service {key} in the registry")
        return int(result.header.revision)

    async def set_health(self, key: ServiceKey, instance_id: str, health: Health) -> int:
        health = Health(health)
        ekey = self.layout.endpoint(key, instance_id)
        t = self.client.transactions
        for _ in range(MAX_CAS_ATTEMPTS):
            current = await self._get(ekey)
            if current is None:
                raise NotFound(f"no endpoint {instance_id!r} of service {key} in the registry")
            updated = replace(ek.decode_endpoint(current.value), health=health)
            put = rpc.RequestOp(
                request_put=rpc.PutRequest(
                    key=ekey, value=ek.encode_endpoint(updated), lease=current.lease
                )
            )
            guard = t.mod(ekey) == current.mod_revision
            ok, response = await self.call(
                "set health", functools.partial(self.txn, [guard], [put])
            )
            if ok:
                return int(response.header.revision)
        raise StoreUnavailable(f"health update of {instance_id!r} kept conflicting")

    # -- leases --------------------------------------------------------------------
    async def grant_lease(self, ttl: float) -> int:
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or ttl <= 0:
            raise ConfigError(
                f"lease ttl must be a positive number of seconds, got {ttl!r}", field="ttl"
            )
        seconds = max(1, math.ceil(ttl))
        lease = await self.call("grant lease", lambda: self.client.lease(seconds))
        return int(lease.id)

    async def keep_alive(self, lease: int) -> None:
        reply = await self.call("keep lease alive", lambda: self.client.refresh_lease(lease))
        if reply is None or reply.TTL <= 0:
            raise NotFound(f"lease {lease} has expired or never existed")

    async def revoke_lease(self, lease: int) -> int:
        request = rpc.LeaseRevokeRequest(ID=lease)
        attempts = 0

        async def revoke() -> Any:
            nonlocal attempts
            attempts += 1
            return await self.client.leasestub.LeaseRevoke(request, timeout=self._rpc_timeout)

        try:
            response = await self.call("revoke lease", revoke)
        except NotFound:
            if attempts <= 1:
                raise NotFound(f"lease {lease} has expired or never existed") from None
            # an earlier attempt was applied before its answer was lost
            return (await self.state()).revision
        return int(response.header.revision)

    # -- watch ---------------------------------------------------------------------
    def watch(self, from_revision: int) -> AsyncIterator[Event]:
        if self._watches is None:
            raise StoreUnavailable("the etcd registry store is not started")
        return self._watches.watch(from_revision)

    async def _pause(self, delay: float, what: str, exc: BaseException) -> None:
        event(log, logging.INFO, what, error=str(exc), retry_in=round(delay, 3))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._closed.wait()

    async def _resync(self) -> Event | None:
        """The full state as a RESYNC event, retrying until it can be read (or close)."""
        next_delay = self._delays()
        while not self._closed.is_set():
            try:
                state = await self.state()
            except StoreUnavailable as exc:
                await self._pause(next_delay(), "resync read failed", exc)
                continue
            event(log, logging.INFO, "watch history compacted, resyncing", revision=state.revision)
            return Event(EventKind.RESYNC, state.revision, state=state)
        return None
