from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gossamer.contract.identity import ServiceKey
from gossamer.contract.vocabulary import Health
from gossamer.control.sources import apply_event, follow_store
from gossamer.discovery.model import Endpoint, Event, EventKind, RegistryState, Service
from gossamer.discovery.store import Store

KEY = ServiceKey("default", "echo")
SERVICE = Service("echo")


def endpoint(instance: str, owner: str = "static") -> Endpoint:
    return Endpoint(KEY, instance, "127.0.0.1", 7000, owner=owner)


def test_apply_event_folds_changes():
    state = RegistryState(1)
    state = apply_event(state, Event(EventKind.PUT_SERVICE, 2, service=SERVICE))
    state = apply_event(state, Event(EventKind.PUT_ENDPOINT, 3, endpoint=endpoint("a")))
    state = apply_event(state, Event(EventKind.PUT_ENDPOINT, 4, endpoint=endpoint("b", "lease:9")))
    assert state.revision == 4 and [e.instance_id for e in state.endpoints_of(KEY)] == ["a", "b"]
    state = apply_event(state, Event(EventKind.DELETE_ENDPOINT, 5, key=KEY, instance_id="a"))
    assert [e.instance_id for e in state.endpoints_of(KEY)] == ["b"]
    again = apply_event(state, Event(EventKind.PUT_ENDPOINT, 6, endpoint=endpoint("s")))
    gone = apply_event(again, Event(EventKind.DELETE_SERVICE, 7, key=KEY))
    assert KEY not in gone.services
    # the service's static endpoints go with it; a live sidecar's lease-owned one stays
    assert [e.instance_id for e in gone.endpoints_of(KEY)] == ["b"]
    assert [e.instance_id for e in again.endpoints_of(KEY)] == ["b", "s"]  # inputs untouched


def test_resync_replaces_everything():
    fresh = RegistryState(50, {KEY: SERVICE})
    assert apply_event(RegistryState(3), Event(EventKind.RESYNC, 50, state=fresh)) is fresh
    with pytest.raises(ValueError):
        apply_event(RegistryState(3), Event(EventKind.RESYNC, 50))
    with pytest.raises(ValueError):
        apply_event(RegistryState(3), Event(EventKind.PUT_SERVICE, 4))


class FakeStore(Store):
    """Pure-logic fake: a fixed state and a fixed list of later events."""

    def __init__(self, state: RegistryState, events: list[Event]) -> None:
        self._state = state
        self._events = events
        self.watched_from: int | None = None

    async def state(self) -> RegistryState:
        return self._state

    async def _watch(self, from_revision: int) -> AsyncIterator[Event]:
        self.watched_from = from_revision
        for change in self._events:
            yield change

    def watch(self, from_revision: int) -> AsyncIterator[Event]:
        return self._watch(from_revision)

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def put_service(self, service):
        raise NotImplementedError

    async def delete_service(self, key):
        raise NotImplementedError

    async def put_endpoint(self, endpoint, *, lease=None):
        raise NotImplementedError

    async def delete_endpoint(self, key, instance_id):
        raise NotImplementedError

    async def set_health(self, key, instance_id, health):
        raise NotImplementedError

    async def grant_lease(self, ttl):
        raise NotImplementedError

    async def keep_alive(self, lease):
        raise NotImplementedError

    async def revoke_lease(self, lease):
        raise NotImplementedError


async def test_follow_store_publishes_each_state():
    start = RegistryState(10, {KEY: SERVICE})
    healthy = endpoint("a")
    store = FakeStore(
        start,
        [
            Event(EventKind.PUT_ENDPOINT, 11, endpoint=healthy),
            Event(EventKind.PUT_SERVICE, 12),  # malformed: skipped, not fatal
            Event(
                EventKind.PUT_ENDPOINT,
                13,
                endpoint=Endpoint(KEY, "a", "127.0.0.1", 7000, health=Health.DRAINING),
            ),
        ],
    )
    seen: list[RegistryState] = []
    await follow_store(store, seen.append)
    assert store.watched_from == 10
    assert [s.revision for s in seen] == [10, 11, 13]
    assert seen[-1].endpoints_of(KEY)[0].health is Health.DRAINING
