"""histogram_quantile with Prometheus' rules."""

from __future__ import annotations

import math

from gossamer.observe.quantile import bucket_quantile

INF = math.inf


def test_interpolates_inside_the_bucket():
    buckets = [(0.1, 10.0), (0.5, 20.0), (INF, 20.0)]
    assert bucket_quantile(0.5, buckets) == 0.1
    assert bucket_quantile(0.75, buckets) == 0.1 + 0.4 * 0.5
    assert bucket_quantile(0.25, buckets) == 0.05  # first bucket starts at 0


def test_rank_in_the_inf_bucket_answers_the_largest_bound():
    assert bucket_quantile(0.99, [(1.0, 5.0), (INF, 10.0)]) == 1.0


def test_undefined_cases():
    assert bucket_quantile(0.5, [(1.0, 5.0), (2.0, 6.0)]) is None  # no +Inf
    assert bucket_quantile(0.5, [(1.0, 0.0), (INF, 0.0)]) is None  # nothing observed
    assert bucket_quantile(0.5, [(INF, 3.0)]) is None
    assert bucket_quantile(math.nan, [(1.0, 1.0), (INF, 1.0)]) is None
    assert bucket_quantile(-1, [(1.0, 1.0), (INF, 1.0)]) == -INF
    assert bucket_quantile(2, [(1.0, 1.0), (INF, 1.0)]) == INF


def test_order_and_monotonicity_are_repaired():
    shuffled = [(INF, 20.0), (0.5, 20.0), (0.1, 10.0)]
    assert bucket_quantile(0.75, shuffled) == 0.30000000000000004
    # a bucket scraped a moment earlier than the next one may read lower
    dented = [(0.1, 10.0), (0.2, 9.0), (0.5, 20.0), (INF, 20.0)]
    assert bucket_quantile(0.5, dented) == 0.1
