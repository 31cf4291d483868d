"""PromQL for `stat`, `edges` and `top`, and the shaping of Prometheus' answers (pure).

Each `*_queries` function returns name -> PromQL; the caller runs them as instant
queries and passes name -> result vector (the `data.result` list of
`/api/v1/query`: `[{"metric": {...}, "value": [ts, "1.5"]}, ...]`) to the matching
`*_rows`. Conventions match live.py: per-service and edge figures from the destination
reporter, routes counted once; the meshed count comes from Prometheus' own `up` series
of targets found through the control plane's http_sd (label `gossamer_service`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from gossamer.errors import UsageError
from gossamer.observe.model import Edge, RouteStat, ServiceStat, route_rows, success_rate

Vector = list[dict[str, Any]]
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9_.:-]*$")
QUANTILES = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))


def window_text(seconds: float) -> str:
    """A PromQL range (`[60s]`'s inside); at least 2 s."""
    if not math.isfinite(seconds) or seconds < 2:
        raise UsageError(f"the window must be at least 2s, got {seconds:g}s")
    return f"{round(seconds)}s"


def _selector(base: Mapping[str, str], service: str | None, label: str) -> str:
    matchers = dict(base)
    if service is not None:
        if not _LABEL_VALUE.match(service):
            raise UsageError(f"{service!r} is not a service name")
        matchers[label] = service
    return ",".join(f'{k}="{v}"' for k, v in matchers.items())


def stat_queries(window: float, service: str | None = None) -> dict[str, str]:
    w = window_text(window)
    sel = _selector({"reporter": "destination"}, service, "destination_service")
    up = _selector({}, service, "gossamer_service") or ""
    up_sel = f'gossamer_service!=""{"," + up if up else ""}'
    queries = {
        "requests": f"sum by (destination_service, classification) "
        f"(rate(gossamer_requests_total{{{sel}}}[{w}]))",
        "tcp_open": f"sum by (destination_service) "
        f"(gossamer_tcp_connections_opened_total{{{sel}}}) - sum by (destination_service) "
        f"(gossamer_tcp_connections_closed_total{{{sel}}})",
        "up": f"sum by (gossamer_service, gossamer_namespace) (up{{{up_sel}}})",
        "targets": f"count by (gossamer_service, gossamer_namespace) (up{{{up_sel}}})",
    }
    for name, q in QUANTILES:
        queries[name] = (
            f"histogram_quantile({q}, sum by (destination_service, le) "
            f"(rate(gossamer_request_duration_seconds_bucket{{{sel}}}[{w}])))"
        )
    return queries


def _value(sample: Mapping[str, Any]) -> float:
    try:
        return float(sample["value"][1])
    except (KeyError, IndexError, TypeError, ValueError):
        return math.nan


def _by(vector: Vector, *labels: str) -> dict[tuple[str, ...], float]:
    out: dict[tuple[str, ...], float] = {}
    for sample in vector:
        metric = sample.get("metric", {})
        key = tuple(str(metric.get(label, "")) for label in labels)
        out[key] = out.get(key, 0.0) + _value(sample)
    return out


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def stat_rows(results: Mapping[str, Vector], service: str | None = None) -> list[ServiceStat]:
    requests = _by(results.get("requests", []), "destination_service", "classification")
    tcp = _by(results.get("tcp_open", []), "destination_service")
    up = _by(results.get("up", []), "gossamer_service", "gossamer_namespace")
    targets = _by(results.get("targets", []), "gossamer_service", "gossamer_namespace")
    lat = {name: _by(results.get(name, []), "destination_service") for name, _ in QUANTILES}
    names = {k[0] for k in requests} | {k[0] for k in targets}
    namespaces = {k[0]: k[1] for k in targets}
    rows = []
    for name in sorted(n for n in names if n):
        if service is not None and name != service:
            continue
        ok = requests.get((name, "success"), 0.0)
        total = sum(v for k, v in requests.items() if k[0] == name)
        ns = namespaces.get(name, "")
        open_now = tcp.get((name,))
        rows.append(
            ServiceStat(
                name=name,
                namespace=ns,
                meshed=round(up.get((name, ns), 0.0)),
                instances=round(targets.get((name, ns), 0.0)),
                rps=total,
                success_rate=success_rate(ok, total),
                p50=_finite(lat["p50"].get((name,))),
                p95=_finite(lat["p95"].get((name,))),
                p99=_finite(lat["p99"].get((name,))),
                tcp_connections=None if open_now is None else max(0, round(open_now)),
            )
        )
    return rows


def edges_queries(window: float) -> dict[str, str]:
    w = window_text(window)
    by = "source_service, destination_service"
    return {
        "requests": f"sum by ({by}, classification, connection_security_policy) "
        f'(rate(gossamer_requests_total{{reporter="destination"}}[{w}]))',
        "p99": f"histogram_quantile(0.99, sum by ({by}, le) "
        f'(rate(gossamer_request_duration_seconds_bucket{{reporter="destination"}}[{w}])))',
        "identities": f"sum by ({by}, source_principal, destination_principal) "
        f"(gossamer_tcp_connections_opened_total) > 0",
    }


def edges_rows(results: Mapping[str, Vector]) -> list[Edge]:
    requests = _by(
        results.get("requests", []),
        "source_service",
        "destination_service",
        "classification",
        "connection_security_policy",
    )
    p99 = _by(results.get("p99", []), "source_service", "destination_service")
    ids = _by(
        results.get("identities", []),
        "source_service",
        "destination_service",
        "source_principal",
        "destination_principal",
    )
    edges: dict[tuple[str, str], Edge] = {}
    for src, dst, _cls, _sec in requests:
        edges.setdefault((src, dst), Edge(src, dst))
    for (src, dst, cp, sp), count in ids.items():
        edge = edges.get((src, dst))
        if edge is None or not count > 0:
            continue
        if cp not in ("", "unknown") and cp not in edge.client_identities:
            edge.client_identities.append(cp)
        if sp not in ("", "unknown") and sp not in edge.server_identities:
            edge.server_identities.append(sp)
    for (src, dst), edge in edges.items():
        mine = {k: v for k, v in requests.items() if k[:2] == (src, dst)}
        total = sum(mine.values())
        ok = sum(v for k, v in mine.items() if k[2] == "success")
        mtls = sum(v for k, v in mine.items() if k[3] == "mutual_tls")
        edge.rps = total
        edge.success_rate = success_rate(ok, total)
        edge.p99 = _finite(p99.get((src, dst)))
        edge.secured = total > 0 and mtls >= total * 0.999999
        edge.client_identities.sort()
        edge.server_identities.sort()
    return sorted(edges.values(), key=lambda e: (e.source, e.destination))


def top_queries(window: float) -> dict[str, str]:
    w = window_text(window)
    by = "reporter, source_service, destination_service, route, method, classification"
    return {"routes": f"sum by ({by}) (rate(gossamer_route_requests_total[{w}]))"}


def top_rows(results: Mapping[str, Vector], limit: int | None = None) -> list[RouteStat]:
    data = _by(
        results.get("routes", []),
        "reporter",
        "source_service",
        "destination_service",
        "route",
        "method",
        "classification",
    )
    picked = route_rows(data)
    return picked[:limit] if limit is not None else picked
