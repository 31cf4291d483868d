"""When a replica on etcd holds configuration at start (control/replica_presence.py
`hold_seconds`, pure): the presence keys it reads decide."""

from __future__ import annotations

import json

from gossamer.control.replica_presence import hold_seconds

TTL = 10.0
NOW = 1_000_000.0


def live(hold_until: float) -> bytes:
    return json.dumps({"hold_until": hold_until}).encode()


def test_a_new_mesh_never_holds() -> None:
    assert hold_seconds({}, NOW, TTL) == 0
    assert hold_seconds({b"live/a": live(0)}, NOW, TTL) == 0  # meshed not yet written


def test_the_first_replica_back_from_an_outage_holds_one_ttl() -> None:
    assert hold_seconds({b"meshed": b"1"}, NOW, TTL) == TTL


def test_a_replica_joining_running_replicas_does_not_hold() -> None:
    keys = {b"meshed": b"1", b"live/a": live(0), b"live/b": live(NOW - 5)}
    assert hold_seconds(keys, NOW, TTL) == 0


def test_replicas_back_from_the_same_outage_serve_at_the_same_moment() -> None:
    # a came back 3 s ago and holds until NOW + 7: b holds as long, not a whole TTL
    keys = {b"meshed": b"1", b"live/a": live(NOW + 7), b"live/c": live(NOW + 2)}
    assert hold_seconds(keys, NOW, TTL) == 7


def test_a_key_it_cannot_read_counts_as_a_running_replica() -> None:
    assert hold_seconds({b"meshed": b"1", b"live/x": b"not json"}, NOW, TTL) == 0
    assert hold_seconds({b"meshed": b"1", b"live/x": b"[1]"}, NOW, TTL) == 0
