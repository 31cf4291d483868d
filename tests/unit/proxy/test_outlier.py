"""Outlier detection (Envoy semantics): consecutive 5xx and gateway failures with their
enforcing percentages, success-rate ejection, ejection time growing and decaying,
max_ejection_percent, and the cluster's panic threshold over ejected hosts."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from gossamer.proxy.config import Cluster, Endpoint, OutlierDetection
from gossamer.proxy.telemetry.metrics import SidecarMetrics
from gossamer.proxy.upstream import outlier
from gossamer.proxy.upstream.balancer import Host, RoundRobin
from gossamer.proxy.upstream.runtime import ClusterRuntime

GW = OutlierDetection(consecutive_failures=3, base_ejection=5.0, max_ejection=12.0)
RNG = random.Random(7)


def hosts(n: int) -> list[Host]:
    return [Host(Endpoint(f"10.0.0.{i}", 1)) for i in range(n)]


def fail(h: Host, hs: list[Host], policy: OutlierDetection, now: float, n: int = 1,
         status: int = 0) -> list[str | None]:  # fmt: skip
    return [outlier.record(h, status, hs, policy, now, RNG) for _ in range(n)]


def test_consecutive_gateway_failures_eject_and_a_success_resets():
    hs = hosts(3)
    h = hs[0]
    assert fail(h, hs, GW, 0.0, 2) == [None, None]
    outlier.record(h, 200, hs, GW, 0.0, RNG)
    assert fail(h, hs, GW, 0.0, 2, status=503) == [None, None]
    assert fail(h, hs, GW, 0.0, 1, status=502) == ["consecutive_gateway_failure"]
    assert outlier.is_ejected(h, 4.9) and not outlier.is_ejected(h, 5.1)


def test_a_500_is_not_a_gateway_failure_but_is_a_5xx():
    hs = hosts(3)
    policy = OutlierDetection(consecutive_failures=3, consecutive_5xx=4)
    assert fail(hs[0], hs, policy, 0.0, 3, status=500) == [None] * 3
    assert hs[0].failures == 0  # 500 broke the gateway streak
    assert fail(hs[0], hs, policy, 0.0, 1, status=500) == ["consecutive_5xx"]


def test_enforcing_zero_detects_but_never_ejects_and_the_count_restarts():
    hs = hosts(3)
    policy = OutlierDetection(
        consecutive_failures=0, consecutive_5xx=2, enforcing_consecutive_5xx=0
    )
    assert fail(hs[0], hs, policy, 0.0, 10, status=500) == [None] * 10
    assert hs[0].errors_5xx == 0 and not outlier.is_ejected(hs[0], 0.0)


def test_enforcing_percentage_ejects_about_that_share():
    policy = OutlierDetection(consecutive_failures=1, enforcing_consecutive_gateway=30,
                              max_ejection_percent=100)  # fmt: skip
    rng = random.Random(3)
    ejected = 0
    for _ in range(2000):
        hs = hosts(2)
        ejected += outlier.record(hs[0], 503, hs, policy, 0.0, rng) is not None
    assert 500 < ejected < 700


def test_ejection_time_grows_is_capped_and_decays_back_in_service():
    hs = hosts(3)
    h = hs[0]
    now = 0.0
    times = []
    for _ in range(4):
        fail(h, hs, GW, now, 3)
        times.append(round(h.ejected_until - now, 6))
        now = h.ejected_until + 0.1
    assert times == [5.0, 10.0, 12.0, 12.0]
    # each interval spent in service lowers the multiplier by one
    multiplier = h.ejections
    for i in range(multiplier):
        outlier.tick(hs, GW, now + i, RNG)
    assert h.ejections == 0
    fail(h, hs, GW, now + 10, 3)
    assert h.ejected_until - (now + 10) == 5.0


def test_no_more_than_the_allowed_share_is_ejected_but_always_one():
    hs = hosts(3)
    for h in hs:
        fail(h, hs, GW, 0.0, 3)
    assert sum(outlier.is_ejected(h, 1.0) for h in hs) == 1  # 50% of 3 -> 1
    hs = hosts(2)
    tight = OutlierDetection(consecutive_failures=1, max_ejection_percent=1)
    for h in hs:
        fail(h, hs, tight, 0.0)
    assert sum(outlier.is_ejected(h, 1.0) for h in hs) == 1


def serve(h: Host, ok: int, bad: int) -> None:
    h.sr_total += ok + bad
    h.sr_ok += ok


SR = OutlierDetection(
    consecutive_failures=0,
    enforcing_success_rate=100,
    success_rate_minimum_hosts=3,
    success_rate_request_volume=10,
    success_rate_stdev_factor=1000,
    max_ejection_percent=50,
    base_ejection=10.0,
)


def test_success_rate_ejects_the_host_below_mean_minus_factor_stdev():
    hs = hosts(3)
    serve(hs[0], 100, 0)
    serve(hs[1], 99, 1)
    serve(hs[2], 50, 50)  # rates 100, 99, 50: mean 83, stdev 23.3 -> threshold 59.7
    assert outlier.tick(hs, SR, 0.0, RNG) == [(hs[2], "success_rate")]
    assert outlier.is_ejected(hs[2], 9.9) and not outlier.is_ejected(hs[2], 10.0)
    assert all(h.sr_total == 0 for h in hs)  # a new interval


def test_success_rate_needs_enough_hosts_with_enough_volume():
    hs = hosts(3)
    serve(hs[0], 100, 0)
    serve(hs[1], 100, 0)
    serve(hs[2], 4, 5)  # below the request volume: not a candidate
    assert outlier.tick(hs, SR, 0.0, RNG) == []
    serve(hs[0], 100, 0)
    serve(hs[1], 50, 50)
    assert outlier.tick(hs[:2], SR, 0.0, RNG) == []  # two hosts < minimum_hosts 3


def test_the_default_stdev_factor_keeps_a_half_failing_host_of_three():
    # Envoy's 1.9: mean 83.3 - 1.9 x 23.6 = 38.5 < 50, so nothing is ejected
    hs = hosts(3)
    serve(hs[0], 100, 0)
    serve(hs[1], 100, 0)
    serve(hs[2], 50, 50)
    policy = OutlierDetection(
        consecutive_failures=0, enforcing_success_rate=100, success_rate_minimum_hosts=3,
        success_rate_request_volume=10,
    )  # fmt: skip
    assert outlier.tick(hs, policy, 0.0, RNG) == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 200), st.integers(0, 200)), min_size=1, max_size=12),
       st.integers(0, 3000))  # fmt: skip
def test_success_rate_outliers_are_exactly_the_hosts_below_the_threshold(counts, factor):
    hs = hosts(len(counts))
    for h, (ok, bad) in zip(hs, counts, strict=True):
        serve(h, ok, bad)
    policy = OutlierDetection(
        enforcing_success_rate=100, success_rate_minimum_hosts=1,
        success_rate_request_volume=10, success_rate_stdev_factor=factor,
    )  # fmt: skip
    found = outlier.success_rate_outliers(hs, policy)
    cands = [h for h in hs if h.sr_total >= 10]
    for h in found:
        assert h in cands
        rate = h.sr_ok / h.sr_total
        assert all(rate <= c.sr_ok / c.sr_total for c in cands if c not in found)
        assert rate < max(c.sr_ok / c.sr_total for c in cands)  # never the best host


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 30)), max_size=60),
       st.integers(1, 8), st.integers(0, 100))  # fmt: skip
def test_ejections_never_exceed_the_percentage_and_never_outlast_the_cap(events, n, pct):
    hs = hosts(n)
    policy = OutlierDetection(consecutive_failures=2, consecutive_5xx=3, base_ejection=3.0,
                              max_ejection=7.0, max_ejection_percent=pct)  # fmt: skip
    rng = random.Random(1)
    now = 0.0
    for index, step in events:
        now += step / 10
        h = hs[index % n]
        outlier.record(h, 503, hs, policy, now, rng)
        out = sum(outlier.is_ejected(x, now) for x in hs)
        assert out <= max(1, pct * n // 100)
        assert all(x.ejected_until - now <= 7.0 + 1e-9 for x in hs)
        if step % 7 == 0:
            outlier.tick(hs, policy, now, rng)


def runtime(hs: list[Host], policy: OutlierDetection, now: list[float], panic: float = 0.0,
            metrics: SidecarMetrics | None = None) -> ClusterRuntime:  # fmt: skip
    config = Cluster("outbound|8080||catalog", "catalog", 8080, tls=False, outlier=policy,
                     panic_threshold=panic)  # fmt: skip
    return ClusterRuntime(
        config,
        hs,
        RoundRobin(hs, random.Random(1), lambda: now[0]),
        {},
        lambda: now[0],
        metrics.outlier_ejection if metrics else None,
        rng=random.Random(2),
    )


def test_the_cluster_avoids_ejected_hosts_while_it_has_others():
    now = [0.0]
    hs = hosts(3)
    cluster = runtime(hs, GW, now)
    for _ in range(3):
        cluster.failed(hs[1])
    assert {cluster.choose([], []) for _ in range(20)} == {hs[0], hs[2]}
    now[0] = 6.0
    assert {cluster.choose([], []) for _ in range(20)} == set(hs)


def test_panic_uses_every_host_when_too_few_are_in_service():
    now = [0.0]
    hs = hosts(4)
    policy = OutlierDetection(consecutive_failures=1, max_ejection_percent=100)
    cluster = runtime(hs, policy, now, panic=50.0)
    cluster.failed(hs[0])
    cluster.failed(hs[1])  # 2 of 4 in service: 50% is not below 50%
    assert {cluster.choose([], []) for _ in range(20)} == {hs[2], hs[3]}
    cluster.failed(hs[2])  # 1 of 4 < 50%: panic, all hosts
    assert {cluster.choose([], []) for _ in range(40)} == set(hs)


def test_success_rate_ejection_runs_at_the_cluster_interval_and_is_counted():
    metrics = SidecarMetrics()
    now = [0.0]
    hs = hosts(3)
    cluster = runtime(hs, SR, now, metrics=metrics)
    for _ in range(20):
        for h in hs:
            cluster.result(h, 500 if h is hs[2] and now[0] % 2 else 200)
            now[0] += 0.01
    cluster.tick(now[0])  # before the interval: nothing
    assert metrics.ejections == {}
    for i in range(40):
        for h in hs:
            cluster.result(h, 500 if h is hs[2] and i % 2 else 200)
    now[0] = SR.interval + 0.5
    cluster.tick(now[0])
    assert metrics.ejections == {("catalog", "success_rate"): 1}
    assert hs[2] not in {cluster.choose([], []) for _ in range(20)}
    assert b'reason="success_rate"' in metrics.render()
