"""Table columns and cells for `gossamer stat`, `edges` and `top` (pure).

Rows are the JSON dicts of model.py (the API's and `--output json`'s shape), so the
same rendering serves figures from Prometheus and from the control plane.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

STAT_COLUMNS = (
    "NAME", "MESHED", "SUCCESS", "RPS", "LATENCY_P50", "LATENCY_P95", "LATENCY_P99", "TCP_CONN",
)  # fmt: skip
EDGE_COLUMNS = ("SRC", "DST", "CLIENT_ID", "SERVER_ID", "SECURED", "RPS", "SUCCESS", "P99")
TOP_COLUMNS = ("SOURCE", "DESTINATION", "ROUTE", "METHOD", "RPS", "SUCCESS")


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.2f}%"


def rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}rps"


def millis(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}ms" if value < 10 else f"{round(value)}ms"


def _short_id(spiffe: str) -> str:
    """`spiffe://td/ns/default/sa/web` -> `web.default` (the identity's service)."""
    if "/ns/" in spiffe and "/sa/" in spiffe:
        ns = spiffe.split("/ns/", 1)[1].split("/", 1)[0]
        sa = spiffe.rsplit("/sa/", 1)[1]
        return f"{sa}.{ns}"
    return spiffe


def stat_table(services: list[Mapping[str, Any]]) -> list[list[str]]:
    return [
        [
            s["name"],
            f"{s['meshed']}/{s['instances']}",
            pct(s["success_rate"]),
            rate(s["rps"]),
            millis(s["latency_p50_ms"]),
            millis(s["latency_p95_ms"]),
            millis(s["latency_p99_ms"]),
            "-" if s["tcp_connections"] is None else str(s["tcp_connections"]),
        ]
        for s in services
    ]


def edge_table(edges: list[Mapping[str, Any]], *, full_ids: bool = False) -> list[list[str]]:
    def ids(values: list[str]) -> str:
        if not values:
            return "-"
        return ",".join(values if full_ids else [_short_id(v) for v in values])

    return [
        [
            e["source"],
            e["destination"],
            ids(e["client_identities"]),
            ids(e["server_identities"]),
            "√" if e["secured"] else "-",
            rate(e["rps"]),
            pct(e["success_rate"]),
            millis(e["latency_p99_ms"]),
        ]
        for e in edges
    ]


def top_table(routes: list[Mapping[str, Any]]) -> list[list[str]]:
    return [
        [
            r["source"],
            r["destination"],
            r["route"],
            r["method"],
            rate(r["rps"]),
            pct(r["success_rate"]),
        ]
        for r in routes
    ]
