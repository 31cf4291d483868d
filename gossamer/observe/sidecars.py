"""The dashboard's view of connected sidecars: configuration version and ACK/NACK state.

Input is what `/v1/sidecars` serves: one entry per xDS stream as the control plane's
stream registry describes it (`node_id`, `node_cluster`, `identity`, `types: {CDS:
{sent_version, acked_version, acked_at, last_nack: {version, error, at}}}`), optionally
with the remembered NACKs of nodes whose stream ended (`{node: {type: nack}}`). Older
or simpler shapes (`node`, `acked: {type: version}`) are accepted too. A type's state
is NACK when its last NACK is newer than its last ACK, pending when a version was sent
and not yet acknowledged, ACK otherwise. Pure functions; the API and tests feed dicts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

TYPE_ORDER = ("CDS", "EDS", "LDS", "RDS", "SDS")


def _service_of(entry: Mapping[str, Any], node: str) -> str:
    cluster = str(entry.get("node_cluster") or entry.get("service") or "")
    if cluster:
        return cluster
    identity = str(entry.get("identity") or "")
    if "/sa/" in identity:
        return identity.rsplit("/sa/", 1)[1]
    return node.split("~", 1)[0] if "~" in node else node


def _type_rows(entry: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    types: dict[str, dict[str, Any]] = {}
    raw = entry.get("types")
    if isinstance(raw, Mapping):
        for name, state in raw.items():
            if isinstance(state, Mapping):
                types[str(name)] = dict(state)
    acked = entry.get("acked")
    if isinstance(acked, Mapping):  # the simple shape: {type: version}
        for name, version in acked.items():
            types.setdefault(str(name), {})["acked_version"] = str(version)
    return types


def _state(t: Mapping[str, Any]) -> str:
    nack = t.get("last_nack")
    acked_at = t.get("acked_at")
    if isinstance(nack, Mapping) and (
        not t.get("acked_version")
        or acked_at is None
        or float(nack.get("at", 0)) >= float(acked_at)
    ):
        return "NACK"
    sent = t.get("sent_version")
    if sent and sent != t.get("acked_version"):
        return "pending"
    return "ACK" if t.get("acked_version") else "pending"


def sidecar_rows(
    sidecars: Sequence[Mapping[str, Any]], remembered: Mapping[str, Mapping[str, Any]] | None = None
) -> list[dict[str, Any]]:
    rows = []
    seen = set()
    for entry in sidecars:
        node = str(entry.get("node_id") or entry.get("node") or "")
        seen.add(node)
        types = _type_rows(entry)
        for type_name, nack in ((remembered or {}).get(node) or {}).items():
            t = types.setdefault(str(type_name), {})
            if t.get("last_nack") is None and isinstance(nack, Mapping):
                t["last_nack"] = dict(nack)
        rows.append(_row(node, entry, types, connected=True))
    for node, nacks in (remembered or {}).items():
        if node not in seen:
            types = {str(k): {"last_nack": dict(v)} for k, v in nacks.items()}
            rows.append(_row(node, {}, types, connected=False))
    return sorted(rows, key=lambda r: (r["service"], r["node"]))


def _row(
    node: str, entry: Mapping[str, Any], types: dict[str, dict[str, Any]], *, connected: bool
) -> dict[str, Any]:
    order = {name: i for i, name in enumerate(TYPE_ORDER)}
    type_rows = []
    last_nack: dict[str, Any] | None = None
    for name in sorted(types, key=lambda n: (order.get(n, 99), n)):
        t = types[name]
        state = _state(t)
        nack = t.get("last_nack") if isinstance(t.get("last_nack"), Mapping) else None
        type_rows.append(
            {
                "type": name,
                "state": state,
                "acked_version": t.get("acked_version", ""),
                "sent_version": t.get("sent_version", ""),
                "nack": nack,
            }
        )
        if nack is not None and (last_nack is None or nack.get("at", 0) > last_nack.get("at", 0)):
            last_nack = {"type": name, **nack}
    states = {t["state"] for t in type_rows}
    versions = {t["acked_version"] for t in type_rows if t["acked_version"]}
    return {
        "node": node,
        "service": _service_of(entry, node),
        "identity": entry.get("identity"),
        "connected": connected,
        "connected_at": entry.get("connected_at"),
        "protocol": entry.get("protocol"),
        "state": "NACK"
        if "NACK" in states
        else ("pending" if "pending" in states or not states else "ACK"),
        "config_version": versions.pop() if len(versions) == 1 else None,
        "types": type_rows,
        "last_nack": last_nack,
    }
