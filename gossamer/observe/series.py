"""`/v1/series` parameters, checked once, and the answer's shape (pure).

`parse_series_query` turns the query string (service, peer, direction, metric, range,
step) into a `SeriesQuery` or raises a ConfigError naming the parameter (the API
answers 400 with it). Limits depend on where points come from (`SeriesLimits`): the
embedded history holds `length` seconds at `step`; Prometheus holds what it holds, so
there the range is capped at 7 days and the number of points at 11,000 (Prometheus'
own cap on a range query). Without `range`, 1 hour (or all the history holds);
without `step`, about 120 points (the history's step or a multiple of it).

Direction: `inbound` (the default with a peer) is the edge peer -> service as the
service's sidecars saw it; `outbound` is service -> peer as the peer's sidecars saw it
(the same destination-reporter convention as `gossamer edges`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gossamer.errors import ConfigError
from gossamer.observe.history import METRICS, SeriesKey, edge_key, service_key
from gossamer.yamlconf import parse_duration

DIRECTIONS = ("inbound", "outbound")
DEFAULT_RANGE = 3600.0
TARGET_POINTS = 120
PROMETHEUS_MAX_RANGE = 7 * 86400.0
PROMETHEUS_MAX_POINTS = 11_000
_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,253}$")


@dataclass(frozen=True)
class SeriesLimits:
    max_range: float  # seconds a query may span
    min_step: float  # the finest step
    max_points: int = PROMETHEUS_MAX_POINTS


@dataclass(frozen=True)
class SeriesQuery:
    service: str
    metric: str
    range_s: float
    step_s: float
    peer: str | None = None
    direction: str | None = None

    @property
    def key(self) -> SeriesKey:
        """The history's series: the service, or the edge peer -> service (inbound) /
        service -> peer (outbound)."""
        if self.peer is None:
            return service_key(self.service)
        if self.direction == "outbound":
            return edge_key(self.service, self.peer)
        return edge_key(self.peer, self.service)


def _duration(raw: str, name: str) -> float:
    try:
        seconds = parse_duration(raw)
    except ValueError as exc:
        raise ConfigError(str(exc), field=name) from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"must be more than 0s, got {raw!r}", field=name)
    return seconds


def _name(query: Mapping[str, str], name: str, required: bool) -> str | None:
    value = query.get(name)
    if value is None or value == "":
        if required:
            raise ConfigError("is required (a service name)", field=name)
        return None
    if not _NAME.match(value):
        raise ConfigError(f"{value!r} is not a service name", field=name)
    return value


def _fmt(seconds: float) -> str:
    return f"{seconds:g}s"


def default_step(range_s: float, min_step: float) -> float:
    """The smallest multiple of `min_step` giving at most TARGET_POINTS points."""
    return max(1, math.ceil(range_s / TARGET_POINTS / min_step)) * min_step


def parse_series_query(query: Mapping[str, str], limits: SeriesLimits) -> SeriesQuery:
    service = _name(query, "service", True)
    assert service is not None
    peer = _name(query, "peer", False)
    direction = query.get("direction") or None
    if direction is not None:
        if direction not in DIRECTIONS:
            raise ConfigError(f"must be inbound or outbound, got {direction!r}", field="direction")
        if peer is None:
            raise ConfigError("needs a peer (the other service of the edge)", field="direction")
    elif peer is not None:
        direction = "inbound"
    metric = query.get("metric") or ""
    if metric not in METRICS:
        got = f", got {metric!r}" if metric else ""
        raise ConfigError(f"must be one of {', '.join(METRICS)}{got}", field="metric")
    range_s = min(DEFAULT_RANGE, limits.max_range)
    if "range" in query:
        range_s = _duration(query["range"], "range")
    if range_s > limits.max_range:
        raise ConfigError(
            f"{query.get('range', _fmt(range_s))} is longer than the history holds "
            f"({_fmt(limits.max_range)})",
            field="range",
        )
    if "step" in query:
        step = _duration(query["step"], "step")
        if step < limits.min_step:
            raise ConfigError(
                f"{query['step']} is finer than the history's step ({_fmt(limits.min_step)})",
                field="step",
            )
    else:
        step = default_step(range_s, limits.min_step)
    if step > range_s:
        raise ConfigError(f"must not be longer than the range ({_fmt(range_s)})", field="step")
    if range_s / step > limits.max_points:
        raise ConfigError(
            f"range/step gives more than {limits.max_points} points; use a coarser step",
            field="step",
        )
    return SeriesQuery(service, metric, range_s, step, peer, direction)


def series_body(
    q: SeriesQuery, points: list[tuple[float, float | None]], *, source: str, now: float
) -> dict[str, Any]:
    """The `/v1/series` answer (also `gossamer series -o json`)."""
    return {
        "service": q.service,
        "peer": q.peer,
        "direction": q.direction,
        "metric": q.metric,
        "source": source,
        "range_s": q.range_s,
        "step_s": q.step_s,
        "end": round(now, 3),
        "points": [[round(t, 3), None if v is None else round(v, 6)] for t, v in points],
    }
