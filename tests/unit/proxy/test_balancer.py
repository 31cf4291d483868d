"""Balancer choices: locality, health, weights, P2C, peak-EWMA (property tests)."""

from __future__ import annotations

import random
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from gossamer.proxy.config import Endpoint, Health, LbPolicy
from gossamer.proxy.upstream.balancer import (
    Host,
    LeastRequest,
    PeakEwma,
    RoundRobin,
    WeightedRandom,
    eligible_hosts,
    make_balancer,
    observe_rtt,
)

ZONES = ["a", "b", "c"]

endpoint_st = st.builds(
    lambda i, zone, weight, health: Endpoint(f"10.0.0.{i}", 15006, zone, weight, health),
    st.integers(1, 250),
    st.sampled_from(ZONES),
    st.integers(1, 5),
    st.sampled_from([Health.HEALTHY, Health.HEALTHY, Health.UNHEALTHY, Health.DRAINING]),
)
hosts_st = st.lists(endpoint_st, min_size=0, max_size=12, unique_by=lambda e: e.address).map(
    lambda eps: [Host(e) for e in eps]
)


def clock() -> float:
    return 100.0


@given(
    hosts_st, st.sampled_from(["", *ZONES]), st.sampled_from(list(LbPolicy)), st.integers(0, 2**32)
)
@settings(max_examples=300)
def test_choices_respect_health_and_locality(hosts, zone, policy, seed):
    balancer = make_balancer(policy, hosts, local_zone=zone, rng=random.Random(seed), clock=clock)
    healthy = [h for h in hosts if h.endpoint.health is Health.HEALTHY]
    local = [h for h in healthy if h.endpoint.zone == zone]
    expected = local if (zone and local) else healthy
    for i in range(20):
        host = balancer.choose(key=str(i).encode())
        if not healthy:
            assert host is None
        else:
            assert host in expected


@given(st.lists(st.integers(1, 6), min_size=1, max_size=8), st.integers(0, 2**32))
def test_round_robin_follows_weights_over_a_cycle(weights, seed):
    hosts = [Host(Endpoint(f"10.0.1.{i}", 1, weight=w)) for i, w in enumerate(weights)]
    rr = RoundRobin(hosts, random.Random(seed), clock)
    total = sum(weights)
    counts = Counter(rr.choose() for _ in range(total * 10))
    for host, w in zip(hosts, weights, strict=True):
        assert abs(counts[host] - 10 * w) <= 1


def test_round_robin_equal_weights_cycles_through_every_host():
    hosts = [Host(Endpoint(f"10.0.2.{i}", 1)) for i in range(5)]
    rr = RoundRobin(hosts, random.Random(1), clock)
    first = [rr.choose() for _ in range(5)]
    assert set(first) == set(hosts)
    assert [rr.choose() for _ in range(5)] == first


def test_weighted_random_distribution():
    hosts = [Host(Endpoint("10.0.3.1", 1, weight=1)), Host(Endpoint("10.0.3.2", 1, weight=3))]
    wr = WeightedRandom(hosts, random.Random(7), clock)
    counts = Counter(wr.choose() for _ in range(20000))
    share = counts[hosts[1]] / 20000
    assert 0.72 < share < 0.78


@given(st.lists(st.integers(0, 20), min_size=2, max_size=10), st.integers(0, 2**32))
def test_p2c_never_picks_the_unique_busiest_host(actives, seed):
    hosts = [Host(Endpoint(f"10.0.4.{i}", 1)) for i in range(len(actives))]
    for h, a in zip(hosts, actives, strict=True):
        h.active = a
    lr = LeastRequest(hosts, random.Random(seed), clock)
    busiest = max(actives)
    unique = actives.count(busiest) == 1
    for _ in range(30):
        chosen = lr.choose()
        assert chosen is not None
        if unique:
            assert chosen.active != busiest


def test_least_request_prefers_idle_hosts():
    hosts = [Host(Endpoint(f"10.0.5.{i}", 1)) for i in range(4)]
    hosts[0].active = 50
    lr = LeastRequest(hosts, random.Random(3), clock)
    counts = Counter(lr.choose() for _ in range(3000))
    assert counts[hosts[0]] == 0  # always loses its pairing


def test_peak_ewma_avoids_a_slow_host_and_forgives_it_later():
    now = [0.0]
    hosts = [Host(Endpoint(f"10.0.6.{i}", 1)) for i in range(3)]
    for i, h in enumerate(hosts):
        observe_rtt(h, 0.5 if i == 0 else 0.005, now[0])
    ewma = PeakEwma(hosts, random.Random(5), lambda: now[0], tau=10.0)
    counts = Counter(ewma.choose() for _ in range(3000))
    assert counts[hosts[0]] == 0
    # a fast observation does not erase a peak at once...
    observe_rtt(hosts[0], 0.001, now[0])
    assert hosts[0].rtt > 0.4
    # ...but time does: the busy hosts keep fresh estimates while the avoided one's
    # decays, so after a few tau it is tried again
    now[0] = 60.0
    for h in hosts[1:]:
        observe_rtt(h, 0.005, now[0])
    counts = Counter(ewma.choose() for _ in range(3000))
    assert counts[hosts[0]] > 0


def test_peak_ewma_jumps_to_slower_observations():
    h = Host(Endpoint("10.0.7.1", 1))
    observe_rtt(h, 0.01, 0.0)
    observe_rtt(h, 0.2, 0.1)
    assert h.rtt == 0.2


@given(hosts_st, st.integers(0, 2**32))
def test_avoid_prefers_untried_hosts(hosts, seed):
    for policy in LbPolicy:
        balancer = make_balancer(policy, hosts, rng=random.Random(seed), clock=clock)
        eligible = eligible_hosts(hosts, "")
        if len(eligible) < 2:
            continue
        tried = [eligible[0]]
        for i in range(10):
            host = balancer.choose(key=f"k{i}".encode(), avoid=tried)
            assert host is not None and host not in tried


def test_ring_hash_is_sticky_per_key():
    hosts = [Host(Endpoint(f"10.0.8.{i}", 1)) for i in range(5)]
    balancer = make_balancer(LbPolicy.RING_HASH, hosts, rng=random.Random(1), clock=clock)
    for key in (b"alice", b"bob", b"carol"):
        first = balancer.choose(key)
        assert all(balancer.choose(key) is first for _ in range(20))
    spread = {balancer.choose(f"user-{i}".encode()) for i in range(200)}
    assert spread == set(hosts)


def test_locality_fails_over_when_the_zone_has_no_healthy_host():
    hosts = [
        Host(Endpoint("10.0.9.1", 1, "a", health=Health.UNHEALTHY)),
        Host(Endpoint("10.0.9.2", 1, "b")),
        Host(Endpoint("10.0.9.3", 1, "c")),
    ]
    assert set(eligible_hosts(hosts, "a")) == {hosts[1], hosts[2]}
    assert eligible_hosts(hosts, "b") == [hosts[1]]


def test_panic_threshold_uses_every_host_when_too_few_are_healthy():
    from gossamer.proxy.config import Endpoint, Health
    from gossamer.proxy.upstream.balancer import eligible_hosts

    def host(i: int, health: Health) -> Host:
        return Host(Endpoint(f"10.0.0.{i}", 1, health=health))

    sick = [host(1, Health.HEALTHY), host(2, Health.UNHEALTHY), host(3, Health.UNHEALTHY)]
    draining = host(4, Health.DRAINING)
    assert eligible_hosts(sick, "") == sick[:1]  # no panic threshold: healthy only
    panicked = eligible_hosts([*sick, draining], "", panic_threshold=50.0)
    assert panicked == sick  # 1 of 4 healthy < 50%: all but the draining one
    assert eligible_hosts(sick[:2], "", panic_threshold=50.0) == sick[:1]  # 50% is enough
    none_healthy = [host(5, Health.UNHEALTHY)]
    assert eligible_hosts(none_healthy, "", panic_threshold=50.0) == none_healthy


def test_priorities_fail_over_in_order_when_a_priority_has_no_healthy_host():
    def host(name: str, zone: str, priority: int, health: Health = Health.HEALTHY) -> Host:
        return Host(Endpoint(name, 1, zone=zone, priority=priority, health=health))

    a = host("10.0.0.1", "a", 0)
    b1, b2 = host("10.0.0.2", "b", 1), host("10.0.0.3", "b", 1)
    c = host("10.0.0.4", "c", 2)
    assert eligible_hosts([a, b1, b2, c], "a") == [a]
    sick_a = host("10.0.0.1", "a", 0, Health.UNHEALTHY)
    assert eligible_hosts([sick_a, b1, b2, c], "a") == [b1, b2]  # next priority, not c
    sick_b = [host(h.endpoint.address, "b", 1, Health.DRAINING) for h in (b1, b2)]
    assert eligible_hosts([sick_a, *sick_b, c], "a") == [c]
    # the control plane's priorities decide, even against the local zone
    local_but_later, first = host("10.0.0.5", "a", 1), host("10.0.0.6", "z", 0)
    assert eligible_hosts([local_but_later, first], "a") == [first]
