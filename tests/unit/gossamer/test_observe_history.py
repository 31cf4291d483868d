"""The embedded history: points from two scrapes, the ring store, coarser steps."""

from __future__ import annotations

import math

import pytest

from gossamer.observe.history import (
    METRICS,
    HistoryStore,
    aggregate,
    edge_key,
    points_from_pairs,
    service_key,
)
from gossamer.observe.live import Scrape, Target, parse_exposition
from gossamer.proxy.telemetry.metrics import SidecarMetrics

CAT = Target("catalog", "default", "catalog-1", "127.0.0.1:15001")
WEB = Target("web", "default", "web-1", "127.0.0.1:15000")
ID = "spiffe://gossamer.local/ns/default/sa/"
T0 = 1_700_000_000.0  # a multiple of 10


def snap(target: Target, metrics: SidecarMetrics, at: float) -> Scrape:
    return Scrape(target, at, parse_exposition(metrics.render().decode()))


def drive(cat: SidecarMetrics, n: int, fail_every: int = 0, seconds: float = 0.002) -> None:
    inb = cat.requests("destination", "web", "catalog", "mutual_tls", "inbound", "GET")
    for i in range(n):
        inb.record(500 if fail_every and i % fail_every == 0 else 200, seconds)


def test_points_from_two_scrapes():
    cat, web = SidecarMetrics(), SidecarMetrics()
    drive(cat, 100)  # before the interval: not counted
    tcp = cat.tcp("destination", "web", "catalog", "mutual_tls", ID + "web", ID + "catalog")
    old = [snap(CAT, cat, 100.0), snap(WEB, web, 100.0)]
    drive(cat, 50, fail_every=5)
    tcp.closed(sent=3000, received=1000)
    new = [snap(CAT, cat, 110.0), snap(WEB, web, 110.0)]
    points = points_from_pairs(list(zip(old, new, strict=True)))
    assert set(points) == {service_key("catalog"), service_key("web"), edge_key("web", "catalog")}
    for key in (service_key("catalog"), edge_key("web", "catalog")):
        p = points[key]
        assert p["rps"] == pytest.approx(5.0)  # 50 requests in 10 s
        assert p["success_rate"] == pytest.approx(0.8)
        assert p["tcp_bytes_per_s"] == pytest.approx(400.0)  # 4000 bytes in 10 s
        p50, p99 = p["latency_p50_ms"], p["latency_p99_ms"]
        assert p50 is not None and p99 is not None and 1.0 <= p50 <= p99 <= 2.5  # 2 ms bucket
    idle = points[service_key("web")]  # a sidecar with no inbound traffic
    assert idle["rps"] == 0 and idle["success_rate"] is None and idle["latency_p99_ms"] is None


def test_counter_reset_counts_the_new_value_and_first_scrape_gives_nothing():
    before, after = SidecarMetrics(), SidecarMetrics()
    drive(before, 80)
    drive(after, 20)  # the sidecar restarted: counters went down
    points = points_from_pairs([(snap(CAT, before, 0.0), snap(CAT, after, 10.0))])
    assert points[service_key("catalog")]["rps"] == pytest.approx(2.0)
    assert points_from_pairs([(None, snap(CAT, after, 10.0))]) == {}


def point(rps, sr=None, p99=None):
    return {"rps": rps, "success_rate": sr, "latency_p99_ms": p99}


def test_store_appends_and_reads_back():
    store = HistoryStore(60, 10)  # 6 points a series
    a = service_key("a")
    for i in range(3):
        store.append(T0 + i * 10 + 0.4, {a: point(i + 1, 0.9, 5.0 + i)})
    got = store.query(a, "rps", T0 - 100, T0 + 100, 10)
    assert got == [(T0, 1.0), (T0 + 10, 2.0), (T0 + 20, 3.0)]
    assert store.query(a, "latency_p99_ms", T0, T0 + 20, 10)[-1] == (T0 + 20, 7.0)
    assert store.query(a, "latency_p50_ms", T0, T0 + 20, 10) == [
        (T0, None),
        (T0 + 10, None),
        (T0 + 20, None),
    ]
    assert store.query(service_key("nobody"), "rps", T0, T0 + 20, 10) == []
    with pytest.raises(KeyError):
        store.query(a, "bogus", T0, T0 + 20, 10)


def test_ring_wraps_and_keeps_only_its_length():
    store = HistoryStore(60, 10)
    a = service_key("a")
    for i in range(20):
        store.append(T0 + i * 10, {a: point(float(i))})
    got = store.query(a, "rps", 0, T0 + 1000, 10)
    assert [v for _, v in got] == [14.0, 15.0, 16.0, 17.0, 18.0, 19.0]
    assert got[0][0] == T0 + 140
    assert store.memory_bytes() == 1 * 6 * len(METRICS) * 8


def test_skipped_slots_are_gaps_not_old_values():
    store = HistoryStore(60, 10)
    a = service_key("a")
    for i in range(6):
        store.append(T0 + i * 10, {a: point(1.0)})
    store.append(T0 + 80, {a: point(2.0)})  # ticks at +60 and +70 never happened
    got = dict(store.query(a, "rps", 0, T0 + 1000, 10))
    assert got[T0 + 60] is None and got[T0 + 70] is None and got[T0 + 80] == 2.0
    store.append(T0 + 30, {a: point(9.0)})  # the clock went back: ignored
    assert dict(store.query(a, "rps", 0, T0 + 1000, 10))[T0 + 50] == 1.0


def test_vanished_series_are_dropped_after_the_length():
    store = HistoryStore(60, 10)
    a, b = service_key("a"), edge_key("a", "b")
    store.append(T0, {a: point(1.0), b: point(1.0)})
    for i in range(1, 7):
        store.append(T0 + i * 10, {a: point(1.0)})
        assert (b in store) == (i < 6)
    assert store.keys() == [a]


def test_coarser_step_aggregates():
    store = HistoryStore(120, 10)
    a = service_key("a")
    rows = [
        (99.0, 1.0, 1.0),
        (10.0, 1.0, 5.0),
        (30.0, 0.5, 9.0),
        (0.0, None, None),
        (20.0, 0.75, 7.0),
    ]
    for i, (rps, sr, p99) in enumerate(rows):
        store.append(T0 + i * 10, {a: point(rps, sr, p99)})
    # a point at t covers (t - step, t]: T0 + 20 holds the points of T0 + 10 and T0 + 20
    assert store.query(a, "rps", T0, T0 + 40, 20) == [(T0, 99.0), (T0 + 20, 20.0), (T0 + 40, 10.0)]
    success = store.query(a, "success_rate", T0 + 10, T0 + 40, 40)
    assert [t for t, _ in success] == [T0 + 40]
    assert success[0][1] == pytest.approx((10 * 1.0 + 30 * 0.5 + 20 * 0.75) / 60)  # by rps
    assert store.query(a, "latency_p99_ms", T0 + 10, T0 + 40, 40) == [(T0 + 40, 9.0)]  # the max


def test_aggregate_rules():
    nan = math.nan
    assert aggregate("rps", [(nan, nan)]) is None
    assert aggregate("rps", [(1.0, 1.0), (nan, nan), (3.0, 3.0)]) == 2.0
    assert aggregate("success_rate", [(0.5, 0.0), (1.0, 0.0)]) == 0.75  # no weight: mean
    assert aggregate("latency_p95_ms", [(2.0, 1.0), (8.0, 1.0)]) == 8.0


def test_store_rejects_a_bad_shape():
    with pytest.raises(ValueError):
        HistoryStore(5, 10)
    with pytest.raises(ValueError):
        HistoryStore(60, 0)
    with pytest.raises(ValueError):
        HistoryStore(60, 10, max_series=0)


def test_series_are_capped_and_the_dropped_points_counted():
    store = HistoryStore(60, 10, max_series=3)
    keys = [edge_key(f"caller-{i}", "catalog") for i in range(5)]
    store.append(T0, {k: point(1.0) for k in keys})
    assert len(store) == 3 and store.dropped == 2
    assert store.memory_bytes() == 3 * 6 * len(METRICS) * 8
    store.append(T0 + 10, {k: point(2.0) for k in keys})  # the known ones still record
    assert store.dropped == 4
    assert [v for _, v in store.query(keys[0], "rps", 0, T0 + 10, 10)] == [1.0, 2.0]
    assert store.query(keys[4], "rps", 0, T0 + 10, 10) == []
    # a series gone for the history's length frees its place for a new one
    for i in range(2, 8):
        store.append(T0 + i * 10, {keys[0]: point(1.0), keys[1]: point(1.0)})
    store.append(T0 + 80, {keys[0]: point(1.0), keys[4]: point(5.0)})
    assert keys[2] not in store and keys[4] in store and store.dropped == 4
    assert HistoryStore(60, 10).max_series == 10_000


def test_kept_scrapes_are_packed_over_a_shared_layout():
    from gossamer.observe.live import rates
    from gossamer.observe.packed import PackedSamples, pack

    cat = SidecarMetrics()
    drive(cat, 10)
    first_scrape = snap(CAT, cat, 0.0)
    first = pack(first_scrape.samples)
    drive(cat, 10)
    second_raw = snap(CAT, cat, 10.0).samples
    second = pack(second_raw, first)
    assert isinstance(second, PackedSamples) and second.layout is first.layout
    drive(cat, 10, fail_every=2)  # a new response_code series appears: a new layout
    third_raw = snap(CAT, cat, 20.0).samples
    third = pack(third_raw, second)
    assert third.layout is not second.layout
    assert dict(third) == third_raw  # reads back as the dict it replaces
    assert third.get("no_such_metric") is None and "gossamer_requests_total" in third
    assert len(third.data) == sum(len(series) for series in third_raw.values())
    # the figures from packed scrapes are those of the parsed ones
    old, new = Scrape(CAT, 10.0, second_raw), Scrape(CAT, 20.0, third_raw)
    plain = rates([(old, new)], "gossamer_requests_total", ("response_code",))
    old.samples, new.samples = second, third
    assert plain[("500",)] == 0.5  # 5 of 10 failed over 10 s
    assert rates([(old, new)], "gossamer_requests_total", ("response_code",)) == plain
