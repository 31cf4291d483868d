"""Outlier detection: consecutive failures eject a host for a growing time, bounded."""

from __future__ import annotations

import random

from gossamer.proxy.balancer import Host, RoundRobin
from gossamer.proxy.cluster import ClusterRuntime, is_ejected, record_failure, record_success
from gossamer.proxy.config import Cluster, Endpoint, OutlierDetection

POLICY = OutlierDetection(consecutive_failures=3, base_ejection=5.0, max_ejection=12.0)


def hosts(n: int) -> list[Host]:
    return [Host(Endpoint(f"10.0.0.{i}", 1)) for i in range(n)]


def test_consecutive_failures_eject_and_success_resets():
    hs = hosts(3)
    h = hs[0]
    assert not record_failure(h, hs, POLICY, 0.0)
    assert not record_failure(h, hs, POLICY, 0.0)
    record_success(h)
    assert not record_failure(h, hs, POLICY, 0.0)
    assert not record_failure(h, hs, POLICY, 0.0)
    assert record_failure(h, hs, POLICY, 0.0)
    assert is_ejected(h, 4.9) and not is_ejected(h, 5.1)


def test_ejection_time_grows_and_is_capped():
    hs = hosts(3)
    h = hs[0]
    now = 0.0
    times = []
    for _ in range(4):
        for _ in range(3):
            record_failure(h, hs, POLICY, now)
        times.append(round(h.ejected_until - now, 6))
        now = h.ejected_until + 0.1
    assert times == [5.0, 10.0, 12.0, 12.0]


def test_no_more_than_the_allowed_share_is_ejected():
    hs = hosts(3)
    for h in hs:
        for _ in range(3):
            record_failure(h, hs, POLICY, 0.0)
    assert sum(is_ejected(h, 1.0) for h in hs) == 1  # 50% of 3 -> 1


def test_the_cluster_avoids_ejected_hosts_while_it_has_others():
    now = [0.0]
    hs = hosts(3)
    cluster = ClusterRuntime(
        Cluster("c", "catalog", 80, tls=False, outlier=POLICY),
        hs,
        RoundRobin(hs, random.Random(1), lambda: now[0]),
        {},
        lambda: now[0],
    )
    for _ in range(3):
        cluster.failed(hs[1])
    picks = {cluster.choose([], []) for _ in range(20)}
    assert picks == {hs[0], hs[2]}
    now[0] = 6.0
    picks = {cluster.choose([], []) for _ in range(20)}
    assert picks == set(hs)


def test_an_ejection_is_counted_for_the_destination_service():
    from gossamer.proxy.metrics_defs import SidecarMetrics

    metrics = SidecarMetrics()
    hs = hosts(3)
    config = Cluster("outbound|8080||catalog", "catalog", 8080, tls=False, outlier=POLICY)
    rt = ClusterRuntime(
        config,
        hs,
        RoundRobin(hs, random.Random(1), lambda: 0.0),
        {},
        lambda: 0.0,
        metrics.outlier_ejection,
    )
    for _ in range(3):
        rt.failed(hs[0])
    assert metrics.ejections == {("catalog", "consecutive_5xx"): 1}
    assert b'gossamer_outlier_ejections_total{destination_service="catalog"' in metrics.render()
