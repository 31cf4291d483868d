from __future__ import annotations

import pytest

from gossamer.contract.identity import ServiceKey
from gossamer.control.sources import apply_event
from gossamer.discovery.model import Endpoint, Event, EventKind, RegistryState, Service

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
