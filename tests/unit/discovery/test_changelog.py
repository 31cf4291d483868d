"""The bounded change log: ordered reads by revision, whole-revision trimming, wake-ups."""

from __future__ import annotations

import asyncio

import pytest

from gossamer.contract.identity import ServiceKey
from gossamer.discovery.changelog import ChangeLog
from gossamer.discovery.model import Event, EventKind

KEY = ServiceKey("default", "svc")


def ev(revision: int, instance: str = "i") -> Event:
    return Event(EventKind.DELETE_ENDPOINT, revision, key=KEY, instance_id=instance)


def test_since_returns_events_after_a_revision_in_order():
    log = ChangeLog(100)
    for r in range(1, 6):
        log.append(r, [ev(r)])
    assert [e.revision for e in log.since(2) or []] == [3, 4, 5]
    assert log.since(5) == []
    assert log.since(99) == []  # a future revision: nothing yet, not a gap


def test_a_write_with_several_events_shares_one_revision():
    log = ChangeLog(100)
    log.append(1, [ev(1, "a"), ev(1, "b"), ev(1, "c")])
    log.append(2, [ev(2)])
    assert [e.instance_id for e in log.since(0) or []] == ["a", "b", "c", "i"]
    assert [e.revision for e in log.since(1) or []] == [2]


def test_trimming_drops_whole_revisions_and_raises_the_floor():
    log = ChangeLog(8)
    for r in range(1, 30):
        log.append(r, [ev(r, "x"), ev(r, "y")])
    assert len(log) <= 8 + 1 + 2
    floor = log.floor
    assert floor > 0
    kept = log.since(floor) or []
    # every revision above the floor is complete (both of its events are present)
    assert [e.revision for e in kept] == [r for r in range(floor + 1, 30) for _ in (0, 1)]
    assert log.since(floor - 1) is None  # those events are gone: the caller must resync


def test_start_revision_sets_floor_and_head():
    log = ChangeLog(10, start_revision=41)
    assert (log.floor, log.head) == (41, 41)
    assert log.since(40) is None
    assert log.since(41) == []
    with pytest.raises(ValueError):
        log.append(41, [ev(41)])


async def test_waiters_wake_on_append_and_on_close():
    log = ChangeLog(10)
    woke: list[int] = []

    async def waiter(n: int) -> None:
        await log.wait_beyond(0)
        woke.append(n)

    tasks = [asyncio.create_task(waiter(n)) for n in range(50)]
    await asyncio.sleep(0)
    assert woke == []
    log.append(1, [ev(1)])
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert sorted(woke) == list(range(50))

    late = asyncio.create_task(log.wait_beyond(1))
    await asyncio.sleep(0)
    assert not late.done()
    log.close()
    await asyncio.wait_for(late, 5)
    assert log.closed


def test_rejects_a_zero_size():
    with pytest.raises(ValueError):
        ChangeLog(0)
