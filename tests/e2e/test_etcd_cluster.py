"""A three-member etcd cluster loses a member (the raft leader, and the one the client
talks to) while writes and a watch run: writes and reads keep working, and the watcher
sees every change, in order, with nothing lost."""

from __future__ import annotations

import asyncio
import time

import pytest

from gossamer.contract.identity import ServiceKey
from gossamer.discovery.etcd import EtcdStore
from gossamer.discovery.model import Endpoint, Event, EventKind, Service
from tests.helpers.etcd import EtcdCluster

pytestmark = pytest.mark.e2e

KEY = ServiceKey("default", "catalog")
WRITES = 120
KILL_AT = 40


def endpoint(i: int) -> Endpoint:
    return Endpoint(KEY, f"i-{i}", "10.0.0.1", 1000 + i)


async def test_killing_a_member_loses_nothing(etcd_cluster: EtcdCluster) -> None:
    leader = etcd_cluster.leader_index()
    assert leader is not None
    order = [leader] + [i for i in range(3) if i != leader]
    members = [("127.0.0.1", etcd_cluster.members[i].client_port) for i in order]
    store = EtcdStore(members, prefix="/cluster", retry_timeout=20)
    await store.start()
    await store.put_service(Service("catalog"))
    base = (await store.state()).revision
    seen: list[Event] = []

    async def watch() -> None:
        async for event in store.watch(base):
            seen.append(event)

    watcher = asyncio.create_task(watch())
    acked: list[tuple[int, str]] = []
    kill_time = 0.0
    for i in range(WRITES):
        if i == KILL_AT:
            etcd_cluster.kill(leader)  # SIGKILL: the leader and our current connection
            kill_time = time.monotonic()
            state = await store.state()  # reads keep working
            assert len(state.endpoints) == KILL_AT
        revision = await store.put_endpoint(endpoint(i))
        acked.append((revision, f"i-{i}"))
    recovery = time.monotonic() - kill_time
    deadline = time.monotonic() + 30
    while not seen or seen[-1].revision < acked[-1][0]:
        assert time.monotonic() < deadline, f"watcher stuck at {seen[-1] if seen else None}"
        await asyncio.sleep(0.02)
    watcher.cancel()

    # every write that was acknowledged is there, and the watcher saw each, in order
    state = await store.state()
    assert {iid for _, iid in acked} == {iid for _, iid in state.endpoints}
    assert all(e.kind == EventKind.PUT_ENDPOINT for e in seen)  # no RESYNC, no gap
    revisions = [e.revision for e in seen]
    assert revisions == sorted(revisions) and len(set(revisions)) == len(revisions)
    assert [
        (e.revision, e.instance_id) for e in seen if (e.revision, e.instance_id) in set(acked)
    ] == acked
    # etcd's own history, read afresh from a surviving member, matches what the live
    # watcher saw: nothing missing, nothing extra
    survivor = EtcdStore([members[1]], prefix="/cluster", retry_timeout=10)
    await survivor.start()
    history: list[Event] = []
    async for event in survivor.watch(base):
        history.append(event)
        if event.revision >= acked[-1][0]:
            break
    await survivor.close()
    assert [(e.revision, e.instance_id) for e in history] == [
        (e.revision, e.instance_id) for e in seen
    ]
    # the killed member comes back and catches up
    etcd_cluster.restart(leader)
    await store.put_endpoint(endpoint(WRITES))
    assert len((await store.state()).endpoints) == WRITES + 1
    await store.close()
    print(f"writes resumed {recovery:.2f}s after the kill (including all later writes)")
