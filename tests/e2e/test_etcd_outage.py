"""etcd goes away and comes back: writes fail with a clear error after retrying (or
succeed if etcd returns while they retry), nothing acknowledged is lost, the watcher
resumes without a gap, and a registration's endpoint is there again afterwards."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from gossamer.contract.identity import ServiceKey
from gossamer.discovery.etcd import EtcdStore
from gossamer.discovery.model import Endpoint, Event, EventKind, Service
from gossamer.discovery.registry import Registry
from gossamer.discovery.store import StoreUnavailable
from tests.helpers.etcd import EtcdCluster, EtcdMember, free_port

pytestmark = pytest.mark.e2e

KEY = ServiceKey("default", "catalog")


def endpoint(name: str) -> Endpoint:
    return Endpoint(KEY, name, "10.0.0.1", 8080)


async def wait_for_revision(seen: list[Event], revision: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not seen or seen[-1].revision < revision:
        assert time.monotonic() < deadline, f"watcher stuck at {seen[-1] if seen else None}"
        await asyncio.sleep(0.02)


async def test_outage_and_recovery(etcd_server: EtcdCluster) -> None:
    member = etcd_server.members[0]
    store = EtcdStore([("127.0.0.1", member.client_port)], prefix="/outage", retry_timeout=1.0)
    await store.start()
    registry = Registry(store)
    registration = await registry.register(
        Endpoint(KEY, "sidecar-1", "10.0.0.2", 15006, mtls=True), ttl=2
    )
    base = (await store.state()).revision
    seen: list[Event] = []

    async def watch() -> None:
        async for event in store.watch(base):
            seen.append(event)

    watcher = asyncio.create_task(watch())
    before = [await store.put_endpoint(endpoint(f"before-{i}")) for i in range(5)]
    await wait_for_revision(seen, before[-1])

    etcd_server.kill(0)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as info:
        await store.put_endpoint(endpoint("during"))
    elapsed = time.monotonic() - started
    message = info.value.message
    assert f"127.0.0.1:{member.client_port} is unreachable" in message and "attempts" in message
    assert info.value.hint and "etcd" in info.value.hint
    assert 0.5 <= elapsed < 5  # it retried with backoff for about retry_timeout, no longer
    with pytest.raises(StoreUnavailable):
        await store.state()

    # a write that is still retrying when etcd returns goes through
    store.retry_timeout = 30
    pending = asyncio.create_task(store.put_endpoint(endpoint("retried")))
    await asyncio.sleep(3)  # etcd stays down longer than the registration's 2 s ttl
    assert not pending.done()
    etcd_server.restart(0)
    retried = await asyncio.wait_for(pending, 30)
    after = [await store.put_endpoint(endpoint(f"after-{i}")) for i in range(5)]
    await wait_for_revision(seen, after[-1])
    watcher.cancel()

    # the watcher saw every change once, in order, with no resync: no gap
    ours = [e for e in seen if e.instance_id != "sidecar-1"]  # the lease's own events aside
    assert all(e.kind == EventKind.PUT_ENDPOINT for e in ours)
    names = [e.instance_id for e in ours]
    assert names == [f"before-{i}" for i in range(5)] + ["retried"] + [
        f"after-{i}" for i in range(5)
    ]
    assert [e.revision for e in seen if e.instance_id == "retried"] == [retried]
    state = await store.state()
    assert {f"before-{i}" for i in range(5)} <= {iid for _, iid in state.endpoints}
    assert "during" not in {iid for _, iid in state.endpoints}

    # the sidecar's registration survives the outage (or registers again by itself)
    async def registered() -> bool:
        e = (await store.state()).endpoints.get((KEY, "sidecar-1"))
        return e is not None and e.owner == f"lease:{registration.lease}"

    deadline = time.monotonic() + 15
    while not await registered():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    await registration.close()
    assert (KEY, "sidecar-1") not in (await store.state()).endpoints
    await store.close()


async def test_start_fails_clearly_when_etcd_is_down_and_works_once_it_is_up(
    tmp_path: Path,
) -> None:
    port = free_port()
    store = EtcdStore([("127.0.0.1", port)], retry_timeout=0.5)
    with pytest.raises(StoreUnavailable) as info:
        await store.start()
    assert "unreachable" in info.value.message
    with pytest.raises(StoreUnavailable):
        store.watch(0)  # not started: a clear error, not an AttributeError
    member = EtcdMember("solo", port, free_port(), tmp_path / "d", tmp_path / "log")
    member.initial_cluster = f"solo={member.peer_url}"
    member.start()
    try:
        EtcdCluster([member], tmp_path).wait_healthy()
        await store.start()  # the failed start left nothing half-open
        assert await store.put_service(Service("late")) > 0
        await store.close()
    finally:
        member.kill()
