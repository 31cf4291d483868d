"""Golden metrics from the sidecars' own /metrics, without Prometheus (pure).

The control plane scrapes every sidecar's admin `/metrics` (scraper.py) and keeps a
short history per target. A figure over a window comes from two scrapes of each target,
the oldest inside the window and the newest: a counter's increase divided by the time
between them (a counter that went down restarted from zero, so its increase is its new
value, as in Prometheus), summed over targets. A target with one scrape only
contributes no rate yet. Rows are the same as the PromQL path's (model.py), and follow
the same conventions: per-service figures from the destination reporter (the service's
own sidecars, counting every request that reached it), edges likewise, routes counted
once (model.pick_route_rows).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from gossamer.observe.model import (
    Edge,
    RouteStat,
    ServiceStat,
    route_rows,
    success_rate,
)
from gossamer.observe.quantile import bucket_quantile

LabelKey = tuple[tuple[str, str], ...]
Samples = dict[str, dict[LabelKey, float]]
PREFIX = "gossamer_"


@dataclass(frozen=True)
class Target:
    """One sidecar's admin endpoint, as the registry lists it."""

    service: str
    namespace: str
    instance: str
    address: str  # host:port of the admin listener

    @property
    def url(self) -> str:
        return f"http://{self.address}/metrics"


@dataclass
class Scrape:
    target: Target
    at: float  # monotonic seconds
    samples: Mapping[str, Mapping[LabelKey, float]] = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def parse_exposition(text: str) -> Samples:
    """The `gossamer_*` samples of a Prometheus text exposition (ValueError if bad)."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        if not family.name.startswith(PREFIX):
            continue
        for sample in family.samples:
            key = tuple(sorted(sample.labels.items()))
            out.setdefault(sample.name, {})[key] = float(sample.value)
    return out


Pair = tuple[Scrape | None, Scrape]  # (oldest in the window, newest) of one target


def _matches(labels: LabelKey, where: Mapping[str, str]) -> bool:
    if not where:
        return True
    found = dict(labels)
    return all(found.get(k) == v for k, v in where.items())


def rates(
    pairs: Iterable[Pair], name: str, by: tuple[str, ...], where: Mapping[str, str] | None = None
) -> dict[tuple[str, ...], float]:
    """sum by (`by`) (rate(name{where}[window])) over every target with two scrapes."""
    out: dict[tuple[str, ...], float] = {}
    for old, new in pairs:
        if old is None or not old.ok or not new.ok or new.at <= old.at:
            continue
        elapsed = new.at - old.at
        before = old.samples.get(name, {})
        for labels, value in new.samples.get(name, {}).items():
            if not _matches(labels, where or {}):
                continue
            prev = before.get(labels, 0.0)
            delta = value - prev if value >= prev else value
            d = dict(labels)
            group = tuple(d.get(k, "") for k in by)
            out[group] = out.get(group, 0.0) + delta / elapsed
    return out


def current(
    scrapes: Iterable[Scrape],
    name: str,
    by: tuple[str, ...],
    where: Mapping[str, str] | None = None,
) -> dict[tuple[str, ...], float]:
    """sum by (`by`) (name{where}) over the newest scrape of every target."""
    out: dict[tuple[str, ...], float] = {}
    for scrape in scrapes:
        if not scrape.ok:
            continue
        for labels, value in scrape.samples.get(name, {}).items():
            if _matches(labels, where or {}):
                d = dict(labels)
                group = tuple(d.get(k, "") for k in by)
                out[group] = out.get(group, 0.0) + value
    return out


def _quantiles(
    pairs: Sequence[Pair], by: tuple[str, ...], where: Mapping[str, str]
) -> dict[tuple[str, ...], tuple[float | None, float | None, float | None]]:
    buckets = rates(pairs, "gossamer_request_duration_seconds_bucket", (*by, "le"), where)
    grouped: dict[tuple[str, ...], list[tuple[float, float]]] = {}
    for key, rate in buckets.items():
        grouped.setdefault(key[:-1], []).append((float(key[-1]), rate))
    return {
        key: (
            bucket_quantile(0.5, points),
            bucket_quantile(0.95, points),
            bucket_quantile(0.99, points),
        )
        for key, points in grouped.items()
    }


def live_stats(
    pairs: Sequence[Pair],
    *,
    instances: Mapping[str, int] | None = None,
    namespaces: Mapping[str, str] | None = None,
    service: str | None = None,
) -> list[ServiceStat]:
    """One row per service: every service with a sidecar, in the registry (`instances`:
    service -> endpoints) or named as a destination in the metrics."""
    dest = {"reporter": "destination"}
    by = ("destination_service",)
    totals = rates(pairs, "gossamer_requests_total", (*by, "classification"), dest)
    lat = _quantiles(pairs, by, dest)
    newest = [new for _, new in pairs]
    opened = current(newest, "gossamer_tcp_connections_opened_total", by, dest)
    closed = current(newest, "gossamer_tcp_connections_closed_total", by, dest)
    names = {key[0] for key in totals} | {new.target.service for new in newest}
    names |= set(instances or {})
    rows = []
    for name in sorted(names):
        if service is not None and name != service:
            continue
        ok = totals.get((name, "success"), 0.0)
        total = ok + sum(v for k, v in totals.items() if k[0] == name and k[1] != "success")
        sidecars = [new for new in newest if new.target.service == name]
        p50, p95, p99 = lat.get((name,), (None, None, None))
        tcp = None
        if (name,) in opened:
            tcp = max(0, round(opened[(name,)] - closed.get((name,), 0.0)))
        rows.append(
            ServiceStat(
                name=name,
                namespace=(namespaces or {}).get(name, ""),
                meshed=sum(s.ok for s in sidecars),
                instances=max(len(sidecars), (instances or {}).get(name, 0)),
                rps=total,
                success_rate=success_rate(ok, total),
                p50=p50,
                p95=p95,
                p99=p99,
                tcp_connections=tcp,
            )
        )
    return rows


def live_edges(pairs: Sequence[Pair]) -> list[Edge]:
    """Caller -> callee as the callees' sidecars saw it, with the identities from the
    connection counters of both sides (every identity ever seen on the edge)."""
    dest = {"reporter": "destination"}
    by = ("source_service", "destination_service")
    totals = rates(pairs, "gossamer_requests_total", (*by, "classification"), dest)
    secure = rates(pairs, "gossamer_requests_total", (*by, "connection_security_policy"), dest)
    lat = _quantiles(pairs, by, dest)
    newest = [new for _, new in pairs]
    principals = current(
        newest,
        "gossamer_tcp_connections_opened_total",
        (*by, "source_principal", "destination_principal"),
    )
    edges: dict[tuple[str, str], Edge] = {}
    for (src, dst, _cls), _rate in totals.items():
        edges.setdefault((src, dst), Edge(src, dst))
    for (src, dst, cp, sp), count in principals.items():
        if count > 0 and (src, dst) in edges:
            edge = edges[(src, dst)]
            if cp not in ("", "unknown") and cp not in edge.client_identities:
                edge.client_identities.append(cp)
            if sp not in ("", "unknown") and sp not in edge.server_identities:
                edge.server_identities.append(sp)
    for (src, dst), edge in edges.items():
        ok = totals.get((src, dst, "success"), 0.0)
        total = sum(v for k, v in totals.items() if k[:2] == (src, dst))
        edge.rps = total
        edge.success_rate = success_rate(ok, total)
        edge.p99 = lat.get((src, dst), (None, None, None))[2]
        mtls = secure.get((src, dst, "mutual_tls"), 0.0)
        edge.secured = total > 0 and mtls >= total * 0.999999
        edge.client_identities.sort()
        edge.server_identities.sort()
    return sorted(edges.values(), key=lambda e: (e.source, e.destination))


def live_routes(pairs: Sequence[Pair]) -> list[RouteStat]:
    by = ("reporter", "source_service", "destination_service", "route", "method")
    totals = rates(pairs, "gossamer_route_requests_total", (*by, "classification"))
    return route_rows(totals)


def certificates(scrapes: Iterable[Scrape]) -> list[dict[str, object]]:
    """Each sidecar's certificate expiry (from its newest successful scrape)."""
    out: list[dict[str, object]] = []
    for scrape in scrapes:
        series = scrape.samples.get("gossamer_certificate_expiry_timestamp_seconds", {})
        for labels, when in series.items():
            out.append(
                {
                    "service": scrape.target.service,
                    "namespace": scrape.target.namespace,
                    "instance": scrape.target.instance,
                    "identity": dict(labels).get("identity", ""),
                    "expires_at": when,
                }
            )
    return sorted(out, key=lambda c: (str(c["service"]), str(c["instance"])))
