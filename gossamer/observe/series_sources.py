"""Where `/v1/series` points come from: the embedded history or Prometheus' range API.

Both answer a `SeriesQuery` (series.py) with `[(unix_seconds, value or None), ...]`, so
the API route and the CLI do not care which one is configured. The Prometheus path
runs one `/api/v1/query_range` with the PromQL of `series_promql` (the instant queries
of promql.py over a range): rates over `max(2 * step, 30s)` so every point covers at
least two of Prometheus' scrapes.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

from gossamer.observe.history import HistoryStore
from gossamer.observe.prometheus import PrometheusClient
from gossamer.observe.series import (
    PROMETHEUS_MAX_RANGE,
    SeriesLimits,
    SeriesQuery,
)

Points = list[tuple[float, float | None]]
_QUANTILE = {"latency_p50_ms": 0.5, "latency_p95_ms": 0.95, "latency_p99_ms": 0.99}


class SeriesSource(Protocol):
    name: str

    def limits(self) -> SeriesLimits: ...

    def info(self) -> dict[str, Any]: ...

    async def series(self, q: SeriesQuery, now: float) -> Points: ...


class HistorySeries:
    name = "live"

    def __init__(self, store: HistoryStore) -> None:
        self.store = store

    def limits(self) -> SeriesLimits:
        return SeriesLimits(max_range=self.store.length, min_step=self.store.step)

    def info(self) -> dict[str, Any]:
        return {
            "source": self.name,
            "length_s": self.store.length,
            "step_s": self.store.step,
            "series": len(self.store),
            "memory_bytes": self.store.memory_bytes(),
        }

    async def series(self, q: SeriesQuery, now: float) -> Points:
        return self.store.query(q.key, q.metric, now - q.range_s, now, q.step_s)


def series_promql(q: SeriesQuery) -> str:
    """The PromQL of one series (the service's inbound traffic, or one edge)."""
    _, source, destination = q.key
    matchers = {"reporter": "destination", "destination_service": destination or q.service}
    if q.peer is not None:
        matchers["source_service"] = source
    sel = ",".join(f'{k}="{v}"' for k, v in matchers.items())
    w = f"{max(2 * round(q.step_s), 30)}s"
    if q.metric == "rps":
        return f"sum(rate(gossamer_requests_total{{{sel}}}[{w}]))"
    if q.metric == "success_rate":
        # a series that never succeeded has no classification="success" counter: its
        # numerator is then 0 x the total (0 with traffic, no point without), not empty
        total = f"sum(rate(gossamer_requests_total{{{sel}}}[{w}]))"
        ok = f'sum(rate(gossamer_requests_total{{{sel},classification="success"}}[{w}]))'
        return f"({ok} or {total} * 0) / {total}"
    if q.metric == "tcp_bytes_per_s":
        names = '__name__=~"gossamer_tcp_(sent|received)_bytes_total"'
        return f"sum(rate({{{names},{sel}}}[{w}]))"
    quantile = _QUANTILE[q.metric]
    return (
        f"histogram_quantile({quantile}, sum by (le) "
        f"(rate(gossamer_request_duration_seconds_bucket{{{sel}}}[{w}]))) * 1000"
    )


def matrix_points(result: list[dict[str, Any]]) -> Points:
    """The points of a range query's first series (NaN and Inf: None)."""
    if not result:
        return []
    out: Points = []
    for pair in result[0].get("values", []):
        try:
            t, value = float(pair[0]), float(pair[1])
        except (IndexError, TypeError, ValueError):
            continue
        out.append((t, value if math.isfinite(value) else None))
    return out


class PrometheusSeries:
    name = "prometheus"

    def __init__(self, client: PrometheusClient) -> None:
        self.client = client

    def limits(self) -> SeriesLimits:
        return SeriesLimits(max_range=PROMETHEUS_MAX_RANGE, min_step=1.0)

    def info(self) -> dict[str, Any]:
        return {"source": self.name, "length_s": PROMETHEUS_MAX_RANGE, "step_s": 1.0}

    async def series(self, q: SeriesQuery, now: float) -> Points:
        end = math.floor(now / q.step_s) * q.step_s
        start = end - q.range_s
        result = await self.client.query_range(series_promql(q), start, end, q.step_s)
        return matrix_points(result)
