"""A terminal chart of one `/v1/series` answer: block bars with axis labels (pure).

`render_chart(body, width, height)` returns the lines `gossamer series` prints: a title,
`height` rows of bars drawn with the eighth blocks `▁▂▃▄▅▆▇█` over the whole range
(`end - range_s` to `end`; one column per step, or per group of steps averaged when
there are more steps than `width` columns), the y axis labelled with the top and bottom
values and their unit, the x axis with the range's first and last local time, then
`min/avg/max/last`. A point with no value (None: no traffic
for a ratio or latency, or nothing recorded) is a blank column. Rates start at 0; a
success rate or latency axis spans the values' own range.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

from gossamer.durations import format_duration

BLOCKS = "▁▂▃▄▅▆▇█"
UNITS = {
    "rps": "req/s",
    "success_rate": "%",
    "latency_p50_ms": "ms",
    "latency_p95_ms": "ms",
    "latency_p99_ms": "ms",
    "tcp_bytes_per_s": "B/s",
}
TITLES = {
    "rps": "requests/s",
    "success_rate": "success rate",
    "latency_p50_ms": "latency p50",
    "latency_p95_ms": "latency p95",
    "latency_p99_ms": "latency p99",
    "tcp_bytes_per_s": "TCP bytes/s",
}


def format_value(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    unit = UNITS.get(metric, "")
    if metric == "success_rate":
        return f"{value * 100:.1f}%"
    if abs(value) >= 1000:
        return f"{value:,.0f} {unit}"
    return f"{value:.3g} {unit}" if value else f"0 {unit}"


def _columns(
    points: Sequence[tuple[float, float | None]], start: float, end: float, count: int
) -> list[float | None]:
    """`count` columns spread over (start, end]: each the average of the points whose
    time falls in it (None ignored), None where there is none."""
    sums = [0.0] * count
    seen = [0] * count
    span = max(end - start, 1e-9)
    for t, v in points:
        if v is None:
            continue
        col = min(count - 1, max(0, math.ceil((t - start) / span * count) - 1))
        sums[col] += v
        seen[col] += 1
    return [sums[c] / seen[c] if seen[c] else None for c in range(count)]


def _clock(seconds: float, span: float) -> str:
    return time.strftime("%H:%M:%S" if span < 600 else "%H:%M", time.localtime(seconds))


def describe(body: dict[str, Any]) -> str:
    """`catalog requests/s` or `web -> catalog requests/s` (an edge)."""
    service, peer = body.get("service", ""), body.get("peer")
    what = service
    if peer:
        what = (
            f"{service} -> {peer}"
            if body.get("direction") == "outbound"
            else f"{peer} -> {service}"
        )
    metric = str(body.get("metric", ""))
    return f"{what} {TITLES.get(metric, metric)}"


def summary(metric: str, values: Sequence[float | None]) -> str:
    known = [v for v in values if v is not None]
    if not known:
        return "no data in this range"
    parts = (
        ("min", min(known)),
        ("avg", sum(known) / len(known)),
        ("max", max(known)),
        ("last", known[-1]),
    )
    return "  ".join(f"{name} {format_value(metric, v)}" for name, v in parts)


def render_chart(body: dict[str, Any], width: int = 60, height: int = 8) -> list[str]:
    metric = str(body.get("metric", ""))
    points = body.get("points") or []
    range_s = float(body.get("range_s") or 0)
    step_s = float(body.get("step_s") or 0)
    span = format_duration(range_s) if range_s else "?"
    every = format_duration(step_s) if step_s else "?"
    title = f"{describe(body)}, last {span}, step {every} ({body.get('source', '')})"
    if not points:
        return [title, "no points: no traffic recorded for this series in the range"]
    pairs = [(float(t), None if v is None else float(v)) for t, v in points]
    values = [v for _, v in pairs]
    end = float(body.get("end") or pairs[-1][0])
    start = end - range_s if range_s > 0 else pairs[0][0] - (step_s or 1)
    count = max(1, width)
    if step_s > 0:  # one column per step when the range holds fewer steps than columns
        count = max(1, min(count, math.ceil((end - start) / step_s)))
    cols = _columns(pairs, start, end, count)
    known = [v for v in cols if v is not None and math.isfinite(v)]
    lo = min(known, default=0.0)
    hi = max(known, default=0.0)
    if metric in ("rps", "tcp_bytes_per_s"):
        lo = min(lo, 0.0)
    if hi <= lo:
        hi = lo + (abs(lo) * 0.1 or 1.0)
    top, bottom = format_value(metric, hi), format_value(metric, lo)
    pad = max(len(top), len(bottom))
    levels = [None if v is None else max(1, round((v - lo) / (hi - lo) * height * 8)) for v in cols]
    lines = [title]
    for row in range(height):
        floor = (height - 1 - row) * 8
        cells = []
        for level in levels:
            fill = 0 if level is None else min(8, level - floor)
            cells.append(BLOCKS[fill - 1] if fill > 0 else " ")
        label = top if row == 0 else bottom if row == height - 1 else ""
        mark = "┤" if label else "│"
        lines.append(f"{label:>{pad}} {mark}{''.join(cells)}")
    lines.append(f"{'':>{pad}} └{'─' * len(cols)}")
    left, right = _clock(start, range_s), _clock(end, range_s)
    gap = max(1, len(cols) - len(left) - len(right))
    lines.append(f"{'':>{pad}}  {left}{' ' * gap}{right}")
    lines.append(summary(metric, values))
    return lines
