"""The control plane's embedded metric history: a bounded ring store of golden-metric
points per service and per edge, and the points made from two scrapes (pure).

Every `step` seconds the recorder (recorder.py) scrapes every sidecar and hands the
(previous, newest) scrape pair of each target to `points_from_pairs`, which returns one
point per series: `rps`, `success_rate`, `latency_p50_ms`, `latency_p95_ms`,
`latency_p99_ms`, `tcp_bytes_per_s`, with the conventions of live.py (destination
reporter; a counter that went down restarted from zero). `tcp_bytes_per_s` is the rate
of `gossamer_tcp_sent_bytes_total + gossamer_tcp_received_bytes_total` as the callee's
sidecars count them (the only byte counters a sidecar exports: connections relayed on
`protocol: tcp` ports, not HTTP traffic); a sidecar adds a connection's bytes when it
closes, so a long connection shows its bytes at its end.

`HistoryStore.append` writes the point at step index `floor(unix_time / step)`. Each
series owns one `array('d')` of `size * len(METRICS)` doubles (8 bytes a value), NaN
meaning "no point" (not scraped, or no figure: a success rate or latency with no
request). A series not seen for `length` seconds is dropped. Memory is therefore
`8 * len(METRICS) * size` bytes per series, plus a fixed ~200 bytes of bookkeeping.
The number of series is capped (`max_series`, default `MAX_SERIES` = 10,000: 165 MiB at
the default 1 h at 10 s): a point of a new series beyond the cap is not stored, and
counted in `dropped` (the recorder logs the first, the control plane exports the count).
The recorder also keeps only services the registry knows (recorder.py), so a sidecar's
label values alone cannot make series.

`HistoryStore.query` reads a series at a coarser step: rates (`rps`,
`tcp_bytes_per_s`) are averaged; `success_rate` is averaged weighted by each point's
`rps`; latency quantiles take the largest point of the bucket (an upper bound: the
quantile of the merged interval cannot exceed it).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Mapping, Sequence

from gossamer.observe.live import Pair, rates
from gossamer.observe.quantile import bucket_quantile

METRICS = (
    "rps",
    "success_rate",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "tcp_bytes_per_s",
)
RATE_METRICS = frozenset({"rps", "tcp_bytes_per_s"})
LATENCY_METRICS = frozenset({"latency_p50_ms", "latency_p95_ms", "latency_p99_ms"})
_INDEX = {name: i for i, name in enumerate(METRICS)}
_M = len(METRICS)
NAN = math.nan
BYTES_PER_VALUE = 8
_EMPTY_SLOT = array("d", [NAN]) * _M
MAX_SERIES = 10_000

# ("service", name, "") or ("edge", source, destination)
SeriesKey = tuple[str, str, str]
Point = Mapping[str, float | None]


def service_key(name: str) -> SeriesKey:
    return ("service", name, "")


def edge_key(source: str, destination: str) -> SeriesKey:
    return ("edge", source, destination)


# -- points from two scrapes ----------------------------------------------------------------


def _quantiles_ms(
    pairs: Sequence[Pair], by: tuple[str, ...], where: Mapping[str, str]
) -> dict[tuple[str, ...], tuple[float | None, ...]]:
    buckets = rates(pairs, "gossamer_request_duration_seconds_bucket", (*by, "le"), where)
    grouped: dict[tuple[str, ...], list[tuple[float, float]]] = {}
    for key, rate in buckets.items():
        grouped.setdefault(key[:-1], []).append((float(key[-1]), rate))
    out: dict[tuple[str, ...], tuple[float | None, ...]] = {}
    for key, points in grouped.items():
        values = (bucket_quantile(q, points) for q in (0.5, 0.95, 0.99))
        out[key] = tuple(None if v is None else v * 1000 for v in values)
    return out


def _point(
    total: float,
    ok: float,
    latency: tuple[float | None, ...] | None,
    tcp: float,
) -> dict[str, float | None]:
    p50, p95, p99 = latency if latency is not None and total > 0 else (None, None, None)
    return {
        "rps": total,
        "success_rate": ok / total if total > 0 else None,
        "latency_p50_ms": p50,
        "latency_p95_ms": p95,
        "latency_p99_ms": p99,
        "tcp_bytes_per_s": tcp,
    }


def points_from_pairs(pairs: Sequence[Pair]) -> dict[SeriesKey, dict[str, float | None]]:
    """One point per service (every scraped sidecar's service and every destination in
    the metrics) and per edge seen by a callee's sidecar, over each pair's interval."""
    dest = {"reporter": "destination"}
    svc = ("destination_service",)
    edge = ("source_service", "destination_service")
    out: dict[SeriesKey, dict[str, float | None]] = {}
    for by in (svc, edge):
        requests: dict[tuple[str, ...], list[float]] = {}  # group -> [total, ok]
        by_class = rates(pairs, "gossamer_requests_total", (*by, "classification"), dest)
        for key, rate in by_class.items():
            counts = requests.setdefault(key[:-1], [0.0, 0.0])
            counts[0] += rate
            if key[-1] == "success":
                counts[1] += rate
        latency = _quantiles_ms(pairs, by, dest)
        tcp = rates(pairs, "gossamer_tcp_sent_bytes_total", by, dest)
        for key, value in rates(pairs, "gossamer_tcp_received_bytes_total", by, dest).items():
            tcp[key] = tcp.get(key, 0.0) + value
        groups = set(requests) | set(tcp)
        if by == svc:
            groups |= {(new.target.service,) for old, new in pairs if old is not None and new.ok}
        for group in groups:
            if not all(group):
                continue
            key = service_key(group[0]) if by == svc else edge_key(group[0], group[1])
            total, ok = requests.get(group, (0.0, 0.0))
            out[key] = _point(total, ok, latency.get(group), tcp.get(group, 0.0))
    return out


# -- the ring store -------------------------------------------------------------------------


class _Ring:
    __slots__ = ("first", "last", "values")

    def __init__(self, size: int, first: int) -> None:
        self.values = array("d", [NAN]) * (size * _M)
        self.first = first  # step index of the first point written
        self.last = first  # step index of the newest point written


class HistoryStore:
    """Fixed-size rings of points per series; see the module docstring."""

    def __init__(self, length: float, step: float, max_series: int = MAX_SERIES) -> None:
        if not step > 0 or not length >= step:
            raise ValueError("a history needs step > 0 and length >= step")
        if max_series < 1:
            raise ValueError("a history needs max_series >= 1")
        self.length = float(length)
        self.step = float(step)
        self.size = round(length / step)
        self.max_series = max_series
        self.dropped = 0  # points of new series not stored: the cap was reached
        self.head: int | None = None  # step index of the newest append
        self._series: dict[SeriesKey, _Ring] = {}

    def __len__(self) -> int:
        return len(self._series)

    def __contains__(self, key: object) -> bool:
        return key in self._series

    def keys(self) -> list[SeriesKey]:
        return sorted(self._series)

    def memory_bytes(self) -> int:
        """The rings' values (the bound the README states), without dict overhead."""
        return len(self._series) * self.size * _M * BYTES_PER_VALUE

    def _clear(self, ring: _Ring, first: int, last: int) -> None:
        values, size = ring.values, self.size
        for k in range(max(first, last - size + 1), last + 1):
            base = (k % size) * _M
            values[base : base + _M] = _EMPTY_SLOT

    def append(self, at: float, points: Mapping[SeriesKey, Point]) -> None:
        """Record one point per series at unix time `at`. Slots skipped since the last
        append (a late tick) become gaps; an `at` before the newest append is ignored.
        A new series beyond `max_series` is not created (counted in `dropped`)."""
        k = int(at // self.step)
        if self.head is not None and k < self.head:
            return
        if self.head is not None and k > self.head:
            for old in self._series.values():
                self._clear(old, self.head + 1, k)
        size = self.size
        for gone in [key for key, ring in self._series.items() if ring.last <= k - size]:
            del self._series[gone]
        for key, point in points.items():
            ring = self._series.get(key)
            if ring is None:
                if len(self._series) >= self.max_series:
                    self.dropped += 1
                    continue
                ring = self._series[key] = _Ring(size, k)
            base = (k % size) * _M
            for name, value in point.items():
                i = _INDEX.get(name)
                if i is not None:
                    ring.values[base + i] = NAN if value is None else float(value)
            ring.last = k
        self.head = k

    def _raw(self, ring: _Ring, k: int, metric: int) -> float:
        return ring.values[(k % self.size) * _M + metric]

    def query(
        self, key: SeriesKey, metric: str, start: float, end: float, step: float
    ) -> list[tuple[float, float | None]]:
        """Points of `key`'s `metric` recorded at unix times in [start, end], one per
        `step` bucket, from the series' first point on. A point at time t covers
        (t - step, t], as a recorded point covers the interval since the previous tick
        (and as Prometheus' rate does); None where the bucket holds no value. Empty when
        the series is unknown."""
        ring = self._series.get(key)
        if ring is None or self.head is None:
            return []
        if metric not in _INDEX:
            raise KeyError(metric)
        m, rps = _INDEX[metric], _INDEX["rps"]
        step = float(step)
        first = max(self.head - self.size + 1, ring.first, math.ceil(start / self.step))
        last = min(self.head, math.floor(end / self.step))
        buckets: dict[int, list[tuple[float, float]]] = {}
        for k in range(first, last + 1):
            b = math.ceil(k * self.step / step - 1e-9)
            buckets.setdefault(b, []).append((self._raw(ring, k, m), self._raw(ring, k, rps)))
        return [(b * step, aggregate(metric, values)) for b, values in sorted(buckets.items())]


def aggregate(metric: str, values: Iterable[tuple[float, float]]) -> float | None:
    """One value from a bucket's (value, rps) pairs (NaN: no value), by the rules in the
    module docstring."""
    pairs = [(v, w) for v, w in values if not math.isnan(v)]
    if not pairs:
        return None
    if metric in LATENCY_METRICS:
        return max(v for v, _ in pairs)
    if metric == "success_rate":
        weight = sum(w for _, w in pairs if not math.isnan(w))
        if weight <= 0:
            return sum(v for v, _ in pairs) / len(pairs)
        return sum(v * w for v, w in pairs if not math.isnan(w)) / weight
    return sum(v for v, _ in pairs) / len(pairs)
