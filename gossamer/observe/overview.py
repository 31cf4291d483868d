"""What the dashboard shows in one JSON document (pure): the service graph with golden
metrics on nodes and edges, certificates with their warning state, sidecars with their
configuration state, and a traces link per service.

The graph's nodes are the registry's services plus every service named in the figures;
callers outside the mesh (source `unknown`) appear as one node `(outside)`. A
certificate is `expired` after its notAfter, `warning` within `warn_before` of it,
`ok` otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlencode

from gossamer.observe.model import UNKNOWN, Edge, ServiceStat

OUTSIDE = "(outside)"


def jaeger_link(jaeger_url: str | None, service: str) -> str | None:
    if not jaeger_url:
        return None
    query = urlencode({"service": service, "limit": "20", "lookback": "1h"})
    return f"{jaeger_url.rstrip('/')}/search?{query}"


def certificate_rows(
    certs: Iterable[Mapping[str, Any]], now: float, warn_before: float
) -> list[dict[str, Any]]:
    rows = []
    for cert in certs:
        expires = float(cert.get("expires_at", 0))
        left = expires - now
        status = "expired" if left <= 0 else ("warning" if left <= warn_before else "ok")
        rows.append({**cert, "seconds_left": round(left, 1), "status": status})
    return sorted(rows, key=lambda r: (r["seconds_left"], str(r.get("instance", ""))))


def merge_certificates(
    from_metrics: Iterable[Mapping[str, Any]], sidecars: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Certificates the sidecars export, plus those the control plane saw on their xDS
    streams (`cert_not_after` of a stream row) that the metrics do not already show."""
    out = [dict(c) for c in from_metrics]
    seen = {(c.get("identity"), round(float(c.get("expires_at", 0)))) for c in out}
    for row in sidecars:
        when = row.get("cert_not_after")
        identity = row.get("identity")
        if when is None or not identity:
            continue
        if (identity, round(float(when))) in seen:
            continue
        seen.add((identity, round(float(when))))
        service = str(row.get("node_cluster") or str(identity).rsplit("/sa/", 1)[-1])
        out.append(
            {
                "service": service,
                "namespace": "",
                "instance": str(row.get("node_id") or row.get("peer") or ""),
                "identity": identity,
                "expires_at": float(when),
                "seen_by": "control plane",
            }
        )
    return out


def graph(
    stats: list[ServiceStat],
    edges: list[Edge],
    services: Iterable[tuple[str, str]] = (),
    jaeger_url: str | None = None,
) -> dict[str, Any]:
    nodes: dict[str, dict[str, Any]] = {}

    def node(name: str, namespace: str = "") -> dict[str, Any]:
        shown = OUTSIDE if name == UNKNOWN else name
        if shown not in nodes:
            nodes[shown] = {
                "id": shown,
                "namespace": namespace,
                "meshed": 0,
                "instances": 0,
                "outside": name == UNKNOWN,
                "stat": None,
                "traces_url": None if name == UNKNOWN else jaeger_link(jaeger_url, name),
            }
        elif namespace and not nodes[shown]["namespace"]:
            nodes[shown]["namespace"] = namespace
        return nodes[shown]

    for name, namespace in services:
        node(name, namespace)
    for stat in stats:
        n = node(stat.name, stat.namespace)
        n["meshed"] = stat.meshed
        n["instances"] = stat.instances
        n["stat"] = stat.to_dict()
    out_edges = []
    for edge in edges:
        node(edge.source)
        node(edge.destination)
        data = edge.to_dict()
        data["source"] = OUTSIDE if edge.source == UNKNOWN else edge.source
        out_edges.append(data)
    return {"nodes": sorted(nodes.values(), key=lambda n: n["id"]), "edges": out_edges}


def overview(
    *,
    source: str,
    window: float,
    now: float,
    stats: list[ServiceStat],
    edges: list[Edge],
    services: Iterable[tuple[str, str]],
    certificates: Iterable[Mapping[str, Any]],
    sidecars: list[dict[str, Any]],
    jaeger_url: str | None,
    warn_before: float,
    errors: list[str] | None = None,
) -> dict[str, Any]:
    certs = certificate_rows(certificates, now, warn_before)
    return {
        "generated_at": now,
        "source": source,
        "window_seconds": window,
        "jaeger_url": jaeger_url,
        "certificate_warning_seconds": warn_before,
        "graph": graph(stats, edges, services, jaeger_url),
        "certificates": certs,
        "sidecars": sidecars,
        "summary": {
            "services": len(stats),
            "rps": round(sum(s.rps for s in stats), 4),
            "sidecars": len(sidecars),
            "nacks": sum(1 for s in sidecars if s.get("state") == "NACK"),
            "certificates_warning": sum(1 for c in certs if c["status"] != "ok"),
        },
        "errors": errors or [],
    }
