"""The Store contract, run against both stores: embedded (a real file) and etcd (a real
etcd server started for this module, one key prefix per test).

Every test starts watching from the revision it read at its start, never from 0: the
etcd server is shared by the module and one test compacts its history.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from gossamer.contract.identity import ServiceKey
from gossamer.contract.vocabulary import Health
from gossamer.discovery.embedded import EmbeddedStore
from gossamer.discovery.etcd import EtcdStore
from gossamer.discovery.model import Endpoint, Event, EventKind, RegistryState, Service, ServicePort
from gossamer.discovery.store import Store
from gossamer.errors import ConfigError, NotFound
from tests.helpers.etcd import EtcdCluster

pytestmark = pytest.mark.e2e

CATALOG = Service("catalog", ports=(ServicePort(8080, "http"),))
KEY = CATALOG.key
EMBEDDED_LOG = 64


@dataclass
class Harness:
    kind: str
    store: Store
    lose_history: Callable[[], Awaitable[None]]


@pytest.fixture(params=["embedded", "etcd"])
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    if request.param == "embedded":
        embedded = EmbeddedStore(
            tmp_path / "registry.json", max_log_events=EMBEDDED_LOG, sweep_interval=0.05
        )

        async def overflow_log() -> None:
            for i in range(EMBEDDED_LOG * 2):
                await embedded.put_service(Service(f"filler-{i}"))

        store: Store = embedded
        lose = overflow_log
    else:
        cluster: EtcdCluster = request.getfixturevalue("shared_etcd")
        etcd = EtcdStore(
            [("127.0.0.1", m.client_port) for m in cluster.members],
            prefix=f"/t-{uuid.uuid4().hex[:12]}",
            retry_timeout=3,
            max_log_events=EMBEDDED_LOG,  # small, so watchers fall behind its cache too
        )

        async def compact() -> None:
            revision = (await etcd.state()).revision
            await etcd.client.compact(revision, physical=True)

        store = etcd
        lose = compact
    await store.start()
    try:
        yield Harness(request.param, store, lose)
    finally:
        await store.close()


def static_endpoint(instance: str = "static-1", **kw: object) -> Endpoint:
    return Endpoint(service=KEY, instance_id=instance, address="127.0.0.1", port=8080, **kw)  # type: ignore[arg-type]


def leased(instance: str, lease: int, **kw: object) -> Endpoint:
    return replace(static_endpoint(instance, **kw), owner=f"lease:{lease}", mtls=True)


async def collect(store: Store, after: int, until: int, timeout: float = 15) -> list[Event]:
    """Watch from `after` until an event at revision `until` or beyond arrives."""
    events: list[Event] = []
    stream = store.watch(after)

    async def run() -> None:
        async for event in stream:
            events.append(event)
            if event.revision >= until:
                return

    try:
        await asyncio.wait_for(run(), timeout)
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
    return events


async def sentinel(store: Store) -> int:
    """A write whose revision marks the end of what a test waits for."""
    return await store.put_service(Service(f"sentinel-{uuid.uuid4().hex[:8]}"))


def brief(events: list[Event]) -> list[tuple[str, str | None, str | None]]:
    return [
        (e.kind.value, str(e.key) if e.key else None, e.instance_id)
        for e in events
        if not (
            e.kind == EventKind.PUT_SERVICE and e.service and e.service.name.startswith("sentinel")
        )
    ]


async def wait_until(predicate: Callable[[], Awaitable[bool]], timeout: float = 15) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def apply(state: RegistryState | None, events: list[Event]) -> RegistryState:
    """Rebuild a state from events, as a control plane would."""
    services = dict(state.services) if state else {}
    endpoints = dict(state.endpoints) if state else {}
    revision = state.revision if state else 0
    for e in events:
        revision = e.revision
        if e.kind == EventKind.RESYNC:
            assert e.state is not None
            services, endpoints = dict(e.state.services), dict(e.state.endpoints)
        elif e.kind == EventKind.PUT_SERVICE:
            assert e.service is not None
            services[e.service.key] = e.service
        elif e.kind == EventKind.DELETE_SERVICE:
            assert e.key is not None
            services.pop(e.key, None)
        elif e.kind == EventKind.PUT_ENDPOINT:
            assert e.endpoint is not None
            endpoints[(e.endpoint.service, e.endpoint.instance_id)] = e.endpoint
        elif e.kind == EventKind.DELETE_ENDPOINT:
            assert e.key is not None and e.instance_id is not None
            endpoints.pop((e.key, e.instance_id), None)
    return RegistryState(revision, services, endpoints)


# -- revisions and watches ---------------------------------------------------------


async def test_revisions_grow_and_state_reads_them(harness: Harness) -> None:
    store = harness.store
    base = (await store.state()).revision
    revisions = [
        await store.put_service(CATALOG),
        await store.put_endpoint(static_endpoint()),
        await store.set_health(KEY, "static-1", Health.DRAINING),
        await store.delete_endpoint(KEY, "static-1"),
        await store.delete_service(KEY),
    ]
    assert revisions == sorted(set(revisions)) and revisions[0] > base
    state = await store.state()
    assert state.revision >= revisions[-1]
    assert KEY not in state.services and not state.endpoints


async def test_watch_from_revision_delivers_every_later_change_in_order(harness: Harness) -> None:
    store = harness.store
    base = (await store.state()).revision
    await store.put_service(CATALOG)
    r2 = await store.put_endpoint(static_endpoint("a"))
    await store.put_endpoint(static_endpoint("b", zone="z1", weight=3))
    await store.set_health(KEY, "a", Health.UNHEALTHY)
    await store.delete_endpoint(KEY, "b")
    await store.put_endpoint(static_endpoint("c"))
    last = await store.delete_service(KEY)  # deletes a and c with it, in one revision
    end = await sentinel(store)

    # from the middle first: only what came after r2 (on etcd this starts the shared
    # watch feed at r2, so the full watch below must replay older history itself)
    later = await collect(store, r2, end)
    events = await collect(store, base, end)
    assert brief(events) == [
        ("put_service", "catalog.default", None),
        ("put_endpoint", "catalog.default", "a"),
        ("put_endpoint", "catalog.default", "b"),
        ("put_endpoint", "catalog.default", "a"),
        ("delete_endpoint", "catalog.default", "b"),
        ("put_endpoint", "catalog.default", "c"),
        ("delete_endpoint", "catalog.default", "a"),
        ("delete_endpoint", "catalog.default", "c"),
        ("delete_service", "catalog.default", None),
    ]
    revs = [e.revision for e in events]
    assert revs == sorted(revs)
    assert [e.revision for e in events[-4:-1]] == [last, last, last]
    health_event = events[3]
    assert health_event.endpoint is not None and health_event.endpoint.health == Health.UNHEALTHY
    assert events[2].endpoint is not None and events[2].endpoint.weight == 3

    assert brief(later) == brief(events)[2:]
    assert [e.revision for e in later] == [e.revision for e in events[2:]]


async def test_watch_follows_live_changes(harness: Harness) -> None:
    store = harness.store
    base = (await store.state()).revision
    queue: asyncio.Queue[Event] = asyncio.Queue()

    async def follow() -> None:
        async for event in store.watch(base):
            await queue.put(event)

    task = asyncio.create_task(follow())
    try:
        for i in range(5):
            rev = await store.put_service(Service(f"live-{i}"))
            event = await asyncio.wait_for(queue.get(), 10)
            assert event.revision == rev and event.service == Service(f"live-{i}")
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_resync_when_history_is_gone(harness: Harness) -> None:
    store = harness.store
    base = (await store.state()).revision
    await store.put_service(CATALOG)
    await store.put_endpoint(static_endpoint("kept"))
    await harness.lose_history()
    end = await sentinel(store)

    stream = store.watch(base)
    first = await asyncio.wait_for(anext(stream), 15)
    assert first.kind == EventKind.RESYNC
    resync = first.state
    assert resync is not None and first.revision == resync.revision >= end
    assert (KEY, "kept") in resync.endpoints and KEY in resync.services
    # after the resync the watch goes on with the changes that follow it
    after = await store.put_endpoint(static_endpoint("after"))
    following = await asyncio.wait_for(anext(stream), 15)
    await stream.aclose()  # type: ignore[attr-defined]
    assert following.revision == after and following.kind == EventKind.PUT_ENDPOINT
    assert apply(None, [first, following]).endpoints == (await store.state()).endpoints


async def test_slow_watcher_never_misses_silently(harness: Harness) -> None:
    store = harness.store
    base = (await store.state()).revision
    seen: list[Event] = []
    stream = store.watch(base)
    await store.put_service(CATALOG)
    seen.append(await anext(stream))  # the watcher reads one event, then stalls
    for i in range(EMBEDDED_LOG * 3):
        await store.put_endpoint(static_endpoint(f"e{i % 40}", weight=1 + i % 100))
    end = await sentinel(store)

    async def drain() -> None:
        while True:
            event = await anext(stream)
            seen.append(event)
            if event.revision >= end:
                return

    await asyncio.wait_for(drain(), 15)
    await stream.aclose()  # type: ignore[attr-defined]
    final = await store.state()
    rebuilt = apply(None, seen)
    assert rebuilt.endpoints == final.endpoints
    assert {k for k in rebuilt.services if k.name == "catalog"} == {KEY}
    resyncs = [e for e in seen if e.kind == EventKind.RESYNC]
    if harness.kind == "embedded":  # its log is bounded: the stalled watcher resynced
        assert resyncs
    else:  # etcd still had the history: the watcher replayed it, change by change
        assert not resyncs
        assert len(seen) == 1 + EMBEDDED_LOG * 3 + 1


# -- leases --------------------------------------------------------------------------


async def test_revoking_a_lease_deletes_its_endpoints(harness: Harness) -> None:
    store = harness.store
    await store.put_service(CATALOG)
    lease = await store.grant_lease(30)
    await store.put_endpoint(leased("l1", lease), lease=lease)
    await store.put_endpoint(leased("l2", lease), lease=lease)
    await store.put_endpoint(static_endpoint("s1"))
    base = (await store.state()).revision
    rev = await store.revoke_lease(lease)
    state = await store.state()
    assert set(state.endpoints) == {(KEY, "s1")}
    events = await collect(store, base, await sentinel(store))
    assert sorted(brief(events)) == [
        ("delete_endpoint", "catalog.default", "l1"),
        ("delete_endpoint", "catalog.default", "l2"),
    ]
    assert {e.revision for e in events if e.kind == EventKind.DELETE_ENDPOINT} == {rev}
    with pytest.raises(NotFound):
        await store.keep_alive(lease)
    with pytest.raises(NotFound):
        await store.revoke_lease(lease)
    with pytest.raises(NotFound):
        await store.put_endpoint(leased("l3", lease), lease=lease)


async def test_an_expired_lease_takes_its_endpoints_with_it(harness: Harness) -> None:
    store = harness.store
    kept = await store.grant_lease(1)
    dropped = await store.grant_lease(1)
    await store.put_endpoint(leased("kept", kept), lease=kept)
    await store.put_endpoint(leased("dropped", dropped), lease=dropped)
    base = (await store.state()).revision
    stop = asyncio.Event()

    async def keep() -> None:
        while not stop.is_set():
            await store.keep_alive(kept)
            await asyncio.sleep(0.2)

    keeper = asyncio.create_task(keep())

    async def dropped_gone() -> bool:
        return (KEY, "dropped") not in (await store.state()).endpoints

    try:
        await wait_until(dropped_gone)
        await asyncio.sleep(1.5)  # longer than the ttl: the kept lease must outlive it
        assert (KEY, "kept") in (await store.state()).endpoints
    finally:
        stop.set()
        await keeper
    end = await sentinel(store)
    events = await collect(store, base, end)
    assert brief(events) == [("delete_endpoint", "catalog.default", "dropped")]
    with pytest.raises(NotFound):
        await store.keep_alive(dropped)


async def test_duplicate_instance_ids_are_rejected(harness: Harness) -> None:
    store = harness.store
    await store.put_service(CATALOG)
    one, two = await store.grant_lease(30), await store.grant_lease(30)
    await store.put_endpoint(static_endpoint("s"))
    await store.put_endpoint(leased("x", one), lease=one)
    for endpoint, lease in (
        (leased("s", one), one),
        (leased("x", two), two),
        (static_endpoint("x"), None),
    ):
        with pytest.raises(ConfigError) as info:
            await store.put_endpoint(endpoint, lease=lease)
        assert info.value.field == "instance_id" and "already registered" in info.value.message
    # the same owner may update its own endpoint
    await store.put_endpoint(leased("x", one, zone="z2"), lease=one)
    await store.put_endpoint(static_endpoint("s", weight=5))
    state = await store.state()
    assert state.endpoints[(KEY, "x")].zone == "z2" and state.endpoints[(KEY, "s")].weight == 5
    assert state.endpoints[(KEY, "x")].owner == f"lease:{one}"
    # the same instance id in another service is a different endpoint
    other = replace(static_endpoint("x"), service=ServiceKey("default", "other"))
    await store.put_endpoint(other)


async def test_an_instance_changes_lease_in_one_write(harness: Harness) -> None:
    """A sidecar that moved to another replica takes its instance over from its old
    lease: watchers see one put, never the instance missing, and ending the old lease
    afterwards leaves the instance with its new owner."""
    store = harness.store
    await store.put_service(CATALOG)
    old, new, other = [await store.grant_lease(30) for _ in range(3)]
    await store.put_endpoint(leased("x", old), lease=old)
    base = (await store.state()).revision
    with pytest.raises(ConfigError):  # only the named owner can be replaced
        await store.put_endpoint(leased("x", new), lease=new, replacing=f"lease:{other}")
    await store.put_endpoint(leased("x", new, zone="z2"), lease=new, replacing=f"lease:{old}")
    await store.revoke_lease(old)
    events = await collect(store, base, await sentinel(store))
    assert brief(events) == [("put_endpoint", "catalog.default", "x")]
    held = (await store.state()).endpoints[(KEY, "x")]
    assert held.owner == f"lease:{new}" and held.zone == "z2"
    await store.revoke_lease(new)  # the new lease holds it now
    assert (KEY, "x") not in (await store.state()).endpoints


async def test_owner_must_match_the_lease(harness: Harness) -> None:
    store = harness.store
    lease = await store.grant_lease(30)
    with pytest.raises(ConfigError) as info:
        await store.put_endpoint(static_endpoint("o"), lease=lease)
    assert info.value.field == "owner"
    with pytest.raises(ConfigError):
        await store.put_endpoint(leased("o", lease))
    with pytest.raises(ConfigError) as bad_ttl:
        await store.grant_lease(0)
    assert bad_ttl.value.field == "ttl"


async def test_set_health(harness: Harness) -> None:
    store = harness.store
    lease = await store.grant_lease(30)
    await store.put_endpoint(leased("h", lease), lease=lease)
    base = (await store.state()).revision
    rev = await store.set_health(KEY, "h", Health.DRAINING)
    endpoint = (await store.state()).endpoints[(KEY, "h")]
    assert endpoint.health == Health.DRAINING and endpoint.owner == f"lease:{lease}"
    [event] = [e for e in await collect(store, base, rev)]
    assert event.kind == EventKind.PUT_ENDPOINT and event.endpoint == endpoint
    # the endpoint is still held by its lease after the update
    await store.revoke_lease(lease)
    assert (KEY, "h") not in (await store.state()).endpoints
    with pytest.raises(NotFound):
        await store.set_health(KEY, "h", Health.HEALTHY)
    with pytest.raises(ValueError):
        await store.set_health(KEY, "h", "sick")  # type: ignore[arg-type]


async def test_delete_service_keeps_lease_owned_endpoints(harness: Harness) -> None:
    store = harness.store
    await store.put_service(CATALOG)
    lease = await store.grant_lease(30)
    await store.put_endpoint(static_endpoint("s1"))
    await store.put_endpoint(static_endpoint("s2"))
    await store.put_endpoint(leased("dyn", lease), lease=lease)
    await store.delete_service(KEY)
    state = await store.state()
    assert KEY not in state.services
    assert set(state.endpoints) == {(KEY, "dyn")}
    with pytest.raises(NotFound):
        await store.delete_service(KEY)
    with pytest.raises(NotFound):
        await store.delete_endpoint(KEY, "s1")


async def test_concurrent_writers_are_serialised(harness: Harness) -> None:
    store = harness.store
    counter = itertools.count()

    async def writer(n: int) -> list[int]:
        return [
            await store.put_endpoint(static_endpoint(f"w{n}-{next(counter)}")) for _ in range(10)
        ]

    results = await asyncio.gather(*(writer(n) for n in range(5)))
    revisions = [r for rs in results for r in rs]
    assert len(set(revisions)) == 50
    assert len((await store.state()).endpoints) == 50
