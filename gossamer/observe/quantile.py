"""`histogram_quantile` as Prometheus computes it, for figures made without Prometheus.

Input: cumulative bucket counts `[(upper_bound, count), ...]` (any order, `+Inf`
included) over a window. Rules (prometheus/promql/quantile.go, bucketQuantile): sort
by bound; without a `+Inf` bucket or with no observations the answer is undefined
(None); the rank `q * total` falls in the first bucket whose count reaches it; inside
it the value is interpolated linearly from the bucket's lower bound (0 for the first
bucket, unless its bound is negative); a rank in the `+Inf` bucket answers the largest
finite bound. Counts that decrease with the bound (an artefact of scraping buckets at
slightly different moments) are raised to stay monotonic, as Prometheus does.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


def bucket_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    if math.isnan(q):
        return None
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    ordered = sorted(buckets)
    if len(ordered) < 2 or not math.isinf(ordered[-1][0]):
        return None
    bounds = [b for b, _ in ordered]
    counts: list[float] = []
    running = 0.0
    for _, c in ordered:
        running = max(running, c)  # keep monotonic
        counts.append(running)
    total = counts[-1]
    if total <= 0:
        return None
    rank = q * total
    index = next(i for i, c in enumerate(counts) if c >= rank)
    if index == len(bounds) - 1:
        return bounds[-2]
    if index == 0 and bounds[0] <= 0:
        return bounds[0]
    start = 0.0
    end = bounds[index]
    count = counts[index]
    if index > 0:
        start = bounds[index - 1]
        count -= counts[index - 1]
        rank -= counts[index - 1]
    if count <= 0:
        return end
    return start + (end - start) * (rank / count)
