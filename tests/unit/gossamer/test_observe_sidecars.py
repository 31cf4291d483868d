"""Sidecar rows for the dashboard: configuration version and ACK/NACK state."""

from __future__ import annotations

from gossamer.observe.sidecars import sidecar_rows


def stream(node, types, **extra):
    return {
        "node_id": node,
        "node_cluster": node.split("~")[0],
        "identity": None,
        "types": types,
        **extra,
    }


def test_states():
    acked = {"sent_version": "v2", "acked_version": "v2", "acked_at": 10.0, "last_nack": None}
    pending = {"sent_version": "v3", "acked_version": "v2", "acked_at": 10.0, "last_nack": None}
    nacked = {
        "sent_version": "v3",
        "acked_version": "v2",
        "acked_at": 10.0,
        "last_nack": {"version": "v2", "error": "bad cluster", "at": 20.0},
    }
    healed = {**nacked, "acked_version": "v4", "acked_at": 30.0, "sent_version": "v4"}
    rows = sidecar_rows(
        [
            stream("web~1", {"CDS": acked, "LDS": acked}),
            stream("catalog~1", {"CDS": acked, "LDS": pending}),
            stream("inventory~1", {"RDS": nacked, "CDS": acked}),
            stream("search~1", {"CDS": healed}),
        ]
    )
    by = {r["node"]: r for r in rows}
    assert by["web~1"]["state"] == "ACK" and by["web~1"]["config_version"] == "v2"
    assert by["catalog~1"]["state"] == "pending" and by["catalog~1"]["config_version"] == "v2"
    inv = by["inventory~1"]
    assert inv["state"] == "NACK" and inv["service"] == "inventory"
    assert [t["type"] for t in inv["types"]] == ["CDS", "RDS"]  # xDS order
    assert inv["last_nack"] == {"type": "RDS", "version": "v2", "error": "bad cluster", "at": 20.0}
    assert by["search~1"]["state"] == "ACK"  # a later ACK clears the NACK state
    assert by["search~1"]["last_nack"]["error"] == "bad cluster"  # still shown


def test_remembered_nacks_and_simple_shape():
    rows = sidecar_rows(
        [{"node": "catalog~c1", "acked": {"CDS": "v1"}}],
        {
            "catalog~c1": {"LDS": {"version": "v1", "error": "boom", "at": 5.0}},
            "gone~1": {"CDS": {"version": "v0", "error": "old", "at": 1.0}},
        },
    )
    by = {r["node"]: r for r in rows}
    assert by["catalog~c1"]["service"] == "catalog" and by["catalog~c1"]["state"] == "NACK"
    assert by["gone~1"]["connected"] is False and by["gone~1"]["state"] == "NACK"
    assert sidecar_rows([{"node_id": "x", "types": {}}])[0]["state"] == "pending"


def test_service_from_identity():
    (row,) = sidecar_rows([{"node_id": "abc", "identity": "spiffe://td/ns/default/sa/web"}])
    assert row["service"] == "web"
