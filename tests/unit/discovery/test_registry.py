"""The registry facade over a real (in-memory) embedded store: static sync,
registrations with keep-alive, health, takeover, and recovery from a lost lease."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace

import pytest

from gossamer.contract.identity import ServiceKey
from gossamer.contract.vocabulary import Health
from gossamer.discovery.embedded import EmbeddedStore
from gossamer.discovery.model import Endpoint, EventKind, Service, ServicePort
from gossamer.discovery.registry import Registry
from gossamer.discovery.store import StoreUnavailable
from gossamer.errors import ConfigError, NotFound

A = Service("a", ports=(ServicePort(80),))
B = Service("b")


def static(service: Service, instance: str, **kw: object) -> Endpoint:
    return Endpoint(service.key, instance, "10.0.0.1", 80, **kw)  # type: ignore[arg-type]


def sidecar(instance: str = "pod-1") -> Endpoint:
    return Endpoint(A.key, instance, "10.0.0.9", 15006, mtls=True, zone="z1")


@pytest.fixture
async def registry() -> AsyncIterator[Registry]:
    store = EmbeddedStore(None, sweep_interval=0.02)
    await store.start()
    reg = Registry(store)
    yield reg
    await reg.close()
    await store.close()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_sync_static_adds_updates_and_removes(registry: Registry):
    report = await registry.sync_static([A, B], [static(A, "s1"), static(A, "s2"), static(B, "s3")])
    assert (report.added, report.updated, report.removed) == (5, 0, 0)
    lease_reg = await registry.register(sidecar(), ttl=30)
    await registry.store.set_health(A.key, "s1", Health.UNHEALTHY)  # observed by the control plane

    a2 = replace(A, ports=(ServicePort(80), ServicePort(81)))
    report = await registry.sync_static([a2], [static(a2, "s1", weight=9)])
    state = await registry.state()
    assert state.services == {A.key: a2}
    assert set(state.endpoints) == {(A.key, "s1"), (A.key, "pod-1")}
    s1 = state.endpoints[(A.key, "s1")]
    assert s1.weight == 9 and s1.health == Health.UNHEALTHY  # health survives a re-sync
    assert state.endpoints[(A.key, "pod-1")].owner == f"lease:{lease_reg.lease}"
    assert (report.added, report.updated, report.removed) == (0, 2, 3)

    again = await registry.sync_static([a2], [static(a2, "s1", weight=9)])
    assert (again.added, again.updated, again.removed) == (0, 0, 0)
    assert again.revision == report.revision  # nothing written


async def test_sync_static_refuses_to_take_a_registered_instance(registry: Registry):
    await registry.sync_static([A], [])
    await registry.register(sidecar("pod-1"), ttl=30)
    before = await registry.state()
    with pytest.raises(ConfigError) as info:
        await registry.sync_static([A, B], [static(B, "x"), static(A, "pod-1")])
    assert info.value.field == "instance_id" and "registered by lease:" in info.value.message
    assert (await registry.state()).revision == before.revision  # nothing was half-applied


@pytest.mark.parametrize(
    ("services", "endpoints", "field"),
    [
        ([A], [replace(static(A, "x"), owner="lease:1")], "owner"),
        ([A], [static(B, "x")], "service"),
        ([A], [static(A, "x"), static(A, "x", weight=2)], "instance_id"),
        ([A, A], [], "services"),
    ],
)
async def test_sync_static_validation(registry: Registry, services, endpoints, field):
    with pytest.raises(ConfigError) as info:
        await registry.sync_static(services, endpoints)
    assert info.value.field == field


async def test_register_keeps_the_endpoint_alive_until_close(registry: Registry):
    reg = await registry.register(sidecar(), ttl=0.2)
    key = (A.key, "pod-1")
    loop = asyncio.get_running_loop()
    until = loop.time() + 1.0  # five times the ttl
    while loop.time() < until:
        assert key in (await registry.state()).endpoints
        await asyncio.sleep(0.05)
    assert reg.renewals == 0
    endpoint = (await registry.state()).endpoints[key]
    assert endpoint.owner == f"lease:{reg.lease}" and endpoint.mtls
    await reg.close()
    assert key not in (await registry.state()).endpoints
    assert reg.closed
    await reg.close()  # twice is fine


async def test_set_health(registry: Registry):
    reg = await registry.register(sidecar(), ttl=30)
    revision = await reg.set_health(Health.DRAINING)
    state = await registry.state()
    assert state.revision == revision
    assert state.endpoints[(A.key, "pod-1")].health == Health.DRAINING


async def test_duplicates_and_takeover(registry: Registry):
    await registry.sync_static([A], [static(A, "fixed")])
    first = await registry.register(sidecar("pod-1"), ttl=30)
    with pytest.raises(ConfigError) as info:
        await registry.register(sidecar("pod-1"), ttl=30)
    assert info.value.field == "instance_id"
    with pytest.raises(ConfigError):
        await registry.register(sidecar("fixed"), ttl=30, takeover=True)  # never a static one
    second = await registry.register(sidecar("pod-1"), ttl=30, takeover=True)
    state = await registry.state()
    assert state.endpoints[(A.key, "pod-1")].owner == f"lease:{second.lease}"
    assert state.endpoints[(A.key, "fixed")].owner == "static"
    assert second.lease != first.lease
    # the failed attempts left no lease behind holding anything
    assert sum(1 for e in state.endpoints.values() if e.owner.startswith("lease:")) == 1


async def test_takeover_never_shows_the_instance_missing(registry: Registry):
    """A sidecar that reconnected (to this or another replica) before its old lease ran
    out takes its instance over in one write: the watch, which becomes EDS, has no
    delete in between, and the old lease's end leaves the instance registered."""
    first = await registry.register(sidecar("pod-1"), ttl=30)
    base = (await registry.state()).revision
    second = await registry.register(sidecar("pod-1"), ttl=30, takeover=True)
    end = (await registry.state()).revision
    kinds = []
    async with asyncio.timeout(5):
        async for event in registry.store.watch(base):
            kinds.append((event.kind, event.instance_id))
            if event.revision >= end:
                break
    assert kinds == [(EventKind.PUT_ENDPOINT, "pod-1")]
    with pytest.raises(NotFound):
        await registry.store.keep_alive(first.lease)  # the old lease is gone...
    state = await registry.state()  # ...and the instance stayed with the new one
    assert state.endpoints[(A.key, "pod-1")].owner == f"lease:{second.lease}"


async def test_a_failed_revoke_of_the_old_lease_keeps_the_takeover(registry: Registry):
    first = await registry.register(sidecar("pod-1"), ttl=30)
    revoke = registry.store.revoke_lease

    async def failing(lease: int) -> int:
        if lease == first.lease:
            raise StoreUnavailable("etcd went away for a moment")
        return await revoke(lease)

    registry.store.revoke_lease = failing  # type: ignore[method-assign]
    second = await registry.register(sidecar("pod-1"), ttl=30, takeover=True)
    state = await registry.state()
    assert state.endpoints[(A.key, "pod-1")].owner == f"lease:{second.lease}"


async def test_leaving_leases_keeps_moving_instances_but_not_leaving_ones(registry: Registry):
    moving = await registry.register(sidecar("pod-1"), ttl=30)
    leaving = await registry.register(sidecar("pod-2"), ttl=30)
    registry.leave_leases()  # this replica stops; another one shares the store
    await moving.close()  # its stream was cut: the sidecar moves to another replica
    await leaving.close(deregister=True)  # the sidecar closed its stream: it leaves
    endpoints = (await registry.state()).endpoints
    assert (A.key, "pod-1") in endpoints and (A.key, "pod-2") not in endpoints
    await registry.store.keep_alive(moving.lease)  # left to run out, not revoked


async def test_a_lost_lease_is_replaced_by_registering_again(registry: Registry):
    reg = await registry.register(sidecar(), ttl=0.3)
    old = reg.lease
    await registry.store.revoke_lease(old)  # as if the store had lost it

    async def back() -> bool:
        e = (await registry.state()).endpoints.get((A.key, "pod-1"))
        return e is not None and e.owner != f"lease:{old}"

    await eventually(back)
    assert reg.renewals == 1 and reg.lease != old
    await registry.store.revoke_lease(reg.lease)
    await reg.set_health(Health.UNHEALTHY)  # notices the loss at once and re-registers
    e = (await registry.state()).endpoints[(A.key, "pod-1")]
    assert e.health == Health.UNHEALTHY and e.owner == f"lease:{reg.lease}"


async def test_close_deregisters_everything(registry: Registry):
    await registry.register(sidecar("p1"), ttl=30)
    await registry.register(sidecar("p2"), ttl=30)
    await registry.close()
    assert (await registry.state()).endpoints == {}


async def test_bad_ttl(registry: Registry):
    for ttl in (0, -1, True, "5"):
        with pytest.raises(ConfigError) as info:
            await registry.register(sidecar(), ttl=ttl)  # type: ignore[arg-type]
        assert info.value.field == "ttl"


async def test_watch_passthrough(registry: Registry):
    stream = registry.watch(0)
    await registry.sync_static([B], [])
    event = await asyncio.wait_for(anext(stream), 5)
    assert event.key == ServiceKey("default", "b")
