"""The rows `gossamer stat`, `edges` and `top` print, whichever source filled them.

Rates are per second over the query window; latencies are seconds (None when no
request finished in the window); a success rate is None when there was no request.
`to_dict()` is the `--output json` shape (latencies in milliseconds, as printed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

UNKNOWN = "unknown"


def _ms(seconds: float | None) -> float | None:
    if seconds is None or math.isnan(seconds):
        return None
    return round(seconds * 1000, 3)


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def success_rate(ok: float, total: float) -> float | None:
    return ok / total if total > 0 else None


@dataclass
class ServiceStat:
    """Golden metrics of one service, as its own sidecars saw its inbound traffic."""

    name: str
    namespace: str = ""
    meshed: int = 0  # sidecars answering (scraped / up)
    instances: int = 0  # sidecars known (and static endpoints, when the registry says)
    rps: float = 0.0
    success_rate: float | None = None
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    tcp_connections: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "namespace": self.namespace,
            "meshed": self.meshed,
            "instances": self.instances,
            "success_rate": _round(self.success_rate),
            "rps": _round(self.rps),
            "latency_p50_ms": _ms(self.p50),
            "latency_p95_ms": _ms(self.p95),
            "latency_p99_ms": _ms(self.p99),
            "tcp_connections": self.tcp_connections,
        }


@dataclass
class Edge:
    """Traffic from one service to another, with the mTLS identities seen on it."""

    source: str
    destination: str
    rps: float = 0.0
    success_rate: float | None = None
    p99: float | None = None
    secured: bool = False  # all of the window's requests were mutual TLS
    client_identities: list[str] = field(default_factory=list)
    server_identities: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "destination": self.destination,
            "rps": _round(self.rps),
            "success_rate": _round(self.success_rate),
            "latency_p99_ms": _ms(self.p99),
            "secured": self.secured,
            "client_identities": self.client_identities,
            "server_identities": self.server_identities,
        }


@dataclass
class RouteStat:
    """One (caller, callee, route, method) and its traffic; `gossamer top` ranks these."""

    source: str
    destination: str
    route: str
    method: str
    rps: float = 0.0
    success_rate: float | None = None
    reporter: str = "source"

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "destination": self.destination,
            "route": self.route,
            "method": self.method,
            "rps": _round(self.rps),
            "success_rate": _round(self.success_rate),
            "reporter": self.reporter,
        }


def pick_route_rows(rows: list[RouteStat]) -> list[RouteStat]:
    """Count every request once: by its caller's sidecar (reporter `source`), or by the
    callee's sidecar when the caller has none (reporter `destination`, source unknown).
    Busiest first."""
    chosen = [r for r in rows if r.reporter == "source"]
    chosen += [r for r in rows if r.reporter == "destination" and r.source == UNKNOWN]
    chosen = [r for r in chosen if r.rps > 0]
    chosen.sort(key=lambda r: (-r.rps, r.source, r.destination, r.route, r.method))
    return chosen


def route_rows(rates: Mapping[tuple[str, ...], float]) -> list[RouteStat]:
    """Route rows from request rates keyed by (reporter, source, destination, route,
    method, classification), counted once each (see `pick_route_rows`)."""
    rows: dict[tuple[str, ...], RouteStat] = {}
    ok: dict[tuple[str, ...], float] = {}
    for key, rate in rates.items():
        rep, src, dst, route, method, cls = key
        row = rows.setdefault(key[:5], RouteStat(src, dst, route, method, reporter=rep))
        row.rps += rate
        if cls == "success":
            ok[key[:5]] = ok.get(key[:5], 0.0) + rate
    for key, row in rows.items():
        row.success_rate = success_rate(ok.get(key, 0.0), row.rps)
    return pick_route_rows(list(rows.values()))
