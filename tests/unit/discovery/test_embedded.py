"""Embedded-store specifics: persistence across restarts, lease expiry on a fake clock,
the file lock, damaged files, read-only mode. (The shared contract is in
tests/e2e/test_store_contract.py; the SIGKILL test in tests/e2e/test_embedded_crash.py.)"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path

import pytest

from gossamer.contract.identity import ServiceKey
from gossamer.contract.vocabulary import Health
from gossamer.discovery import snapshot_file
from gossamer.discovery.embedded import EmbeddedStore
from gossamer.discovery.model import Endpoint, EventKind, Service
from gossamer.discovery.store import StoreUnavailable
from gossamer.errors import ConfigError, GossamerError, NotFound, UsageError

SVC = Service("catalog")
KEY = SVC.key


def endpoint(instance: str, **kw: object) -> Endpoint:
    return Endpoint(KEY, instance, "10.0.0.1", 8080, **kw)  # type: ignore[arg-type]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_restart_keeps_static_state_and_drops_leases(tmp_path: Path):
    path = tmp_path / "registry.json"
    store = EmbeddedStore(path)
    await store.start()
    await store.put_service(SVC)
    await store.put_endpoint(endpoint("static"))
    await store.set_health(KEY, "static", Health.DRAINING)
    lease = await store.grant_lease(60)
    last = await store.put_endpoint(endpoint("dyn", owner=f"lease:{lease}"), lease=lease)
    await store.close()

    again = EmbeddedStore(path)
    await again.start()
    state = await again.state()
    assert state.services == {KEY: SVC}
    assert set(state.endpoints) == {(KEY, "static")}
    assert state.endpoints[(KEY, "static")].health == Health.DRAINING
    assert state.revision == last - 1  # the lease-owned write was not persisted
    assert await again.put_service(Service("more")) == state.revision + 1
    with pytest.raises(NotFound):
        await again.keep_alive(lease)
    await again.close()


async def test_lease_writes_do_not_touch_the_file(tmp_path: Path):
    path = tmp_path / "registry.json"
    store = EmbeddedStore(path)
    await store.start()
    await store.put_service(SVC)
    before = path.stat().st_mtime_ns, path.read_bytes()
    lease = await store.grant_lease(60)
    await store.put_endpoint(endpoint("dyn", owner=f"lease:{lease}"), lease=lease)
    await store.set_health(KEY, "dyn", Health.UNHEALTHY)
    await store.revoke_lease(lease)
    assert (path.stat().st_mtime_ns, path.read_bytes()) == before
    await store.close()


async def test_leases_expire_on_the_injected_clock():
    clock = FakeClock()
    store = EmbeddedStore(None, clock=clock, sweep_interval=3600)
    await store.start()
    short, long = await store.grant_lease(5), await store.grant_lease(50)
    await store.put_endpoint(endpoint("a", owner=f"lease:{short}"), lease=short)
    await store.put_endpoint(endpoint("b", owner=f"lease:{long}"), lease=long)
    clock.now += 4
    await store.keep_alive(short)  # deadline moves to now + 5
    clock.now += 4
    assert store.expire_leases() == []
    clock.now += 2
    base = store.revision
    assert store.expire_leases() == [short]
    assert set((await store.state()).endpoints) == {(KEY, "b")}
    stream = store.watch(base)
    event = await anext(stream)
    assert (event.kind, event.instance_id) == (EventKind.DELETE_ENDPOINT, "a")
    clock.now += 100
    # past its deadline, a lease is gone even before the sweeper runs
    with pytest.raises(NotFound):
        await store.keep_alive(long)
    assert (await store.state()).endpoints == {}
    await store.close()


async def test_the_sweeper_expires_leases_by_itself():
    store = EmbeddedStore(None, sweep_interval=0.02)
    await store.start()
    lease = await store.grant_lease(0.05)
    await store.put_endpoint(endpoint("a", owner=f"lease:{lease}"), lease=lease)
    deadline = asyncio.get_running_loop().time() + 5
    while (await store.state()).endpoints:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.01)
    await store.close()


async def test_a_second_writer_is_refused(tmp_path: Path):
    path = tmp_path / "registry.json"
    first = EmbeddedStore(path)
    await first.start()
    second = EmbeddedStore(path)
    with pytest.raises(GossamerError) as info:
        await second.start()
    assert "in use by another process" in info.value.message
    reader = EmbeddedStore(path, read_only=True)  # reading needs no lock
    await reader.start()
    with pytest.raises(UsageError):
        await reader.put_service(SVC)
    await reader.close()
    await first.close()
    await second.start()
    await second.close()


async def test_a_damaged_file_is_reported_and_kept(tmp_path: Path):
    path = tmp_path / "registry.json"
    path.write_text('{"format": 1, "revision": 4, "services": [')
    store = EmbeddedStore(path)
    with pytest.raises(ConfigError) as info:
        await store.start()
    assert str(path) in info.value.message
    assert path.read_text() == '{"format": 1, "revision": 4, "services": ['


async def test_stray_temporaries_are_cleaned_at_start(tmp_path: Path):
    (tmp_path / ".registry-x1.tmp").write_text("{half")
    store = EmbeddedStore(tmp_path / "registry.json")
    await store.start()
    assert not list(tmp_path.glob("*.tmp"))
    await store.close()


async def test_a_failed_file_write_is_an_error_and_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    path = tmp_path / "registry.json"
    store = EmbeddedStore(path)
    await store.start()
    await store.put_service(SVC)
    real = snapshot_file.write_atomic

    def full_disk(p: Path, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(snapshot_file, "write_atomic", full_disk)
    with pytest.raises(StoreUnavailable) as info:
        await store.put_endpoint(endpoint("s"))
    assert "No space left" in info.value.message
    monkeypatch.setattr(snapshot_file, "write_atomic", real)
    await store.put_service(Service("other"))  # the next write persists both
    doc = json.loads(path.read_bytes())
    assert [e["instance_id"] for e in doc["endpoints"]] == ["s"]
    assert {s["name"] for s in doc["services"]} == {"catalog", "other"}
    await store.close()


async def test_watches_end_when_the_store_closes():
    store = EmbeddedStore(None)
    await store.start()
    received: list[object] = []
    stream = store.watch(0)

    async def follow() -> None:
        async for event in stream:
            received.append(event)

    task = asyncio.create_task(follow())
    await store.put_service(SVC)
    await store.close()
    await asyncio.wait_for(task, 5)
    assert len(received) == 1
    with pytest.raises(StoreUnavailable):
        await store.put_service(SVC)
    with pytest.raises(StoreUnavailable):
        store.watch(0)


async def test_set_health_accepts_strings_and_keeps_everything_else():
    store = EmbeddedStore(None)
    await store.start()
    original = endpoint("s", zone="z", weight=7, labels=(("a", "b"),))
    await store.put_endpoint(original)
    await store.set_health(KEY, "s", "draining")  # type: ignore[arg-type]
    assert (await store.state()).endpoints[(KEY, "s")] == replace(original, health=Health.DRAINING)
    await store.close()


async def test_unknown_service_lookups(tmp_path: Path):
    store = EmbeddedStore(None)
    await store.start()
    assert await store.get_endpoint(ServiceKey("default", "nope"), "x") is None
    await store.close()
