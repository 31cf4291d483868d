"""Figures from two scrapes of each sidecar, without Prometheus."""

from __future__ import annotations

import pytest

from gossamer.observe.live import (
    Scrape,
    Target,
    certificates,
    live_edges,
    live_routes,
    live_stats,
    parse_exposition,
    rates,
)
from gossamer.proxy.telemetry.metrics import SidecarMetrics

WEB = Target("web", "default", "web-1", "127.0.0.1:15000")
CAT = Target("catalog", "default", "catalog-1", "127.0.0.1:15001")
CAT2 = Target("catalog", "default", "catalog-2", "127.0.0.1:15002")
ID = "spiffe://gossamer.local/ns/default/sa/"


def snap(target: Target, metrics: SidecarMetrics, at: float) -> Scrape:
    return Scrape(target, at, parse_exposition(metrics.render().decode()))


def traffic(web: SidecarMetrics, cat: SidecarMetrics, n: int, fail_every: int = 0) -> None:
    out = web.requests("source", "web", "catalog", "mutual_tls", "catalog-route", "GET")
    inb = cat.requests("destination", "web", "catalog", "mutual_tls", "inbound", "GET")
    for i in range(n):
        status = 503 if fail_every and i % fail_every == 0 else 200
        out.record(status, 0.004)
        inb.record(status, 0.002)


def test_stats_from_two_scrapes():
    web, cat = SidecarMetrics(), SidecarMetrics()
    cat.tcp("destination", "web", "catalog", "mutual_tls", ID + "web", ID + "catalog").opened()
    traffic(web, cat, 100)  # before the window: not counted
    old = [snap(WEB, web, 10.0), snap(CAT, cat, 10.0)]
    traffic(web, cat, 40, fail_every=4)
    new = [snap(WEB, web, 20.0), snap(CAT, cat, 20.0)]
    pairs = list(zip(old, new, strict=True))
    rows = {r.name: r for r in live_stats(pairs, instances={"catalog": 2})}
    assert set(rows) == {"web", "catalog"}
    c = rows["catalog"]
    assert c.rps == pytest.approx(4.0)  # 40 requests in 10 s
    assert c.success_rate == pytest.approx(0.75)
    assert c.meshed == 1 and c.instances == 2
    assert c.p50 is not None and 0.001 <= c.p50 <= 0.0025  # the 2 ms bucket
    assert c.tcp_connections == 1
    w = rows["web"]  # no inbound traffic: a meshed row with no rate
    assert w.rps == 0 and w.success_rate is None and w.p50 is None and w.meshed == 1
    only = live_stats(pairs, service="catalog")
    assert [r.name for r in only] == ["catalog"]


def test_counter_reset_and_missing_baseline():
    first, restarted = SidecarMetrics(), SidecarMetrics()
    series = first.requests("destination", "web", "catalog", "none")
    for _ in range(50):
        series.record(200, 0.01)
    old = snap(CAT, first, 0.0)
    again = restarted.requests("destination", "web", "catalog", "none")
    for _ in range(5):
        again.record(200, 0.01)
    new = snap(CAT, restarted, 5.0)  # the sidecar restarted: counters went down
    got = rates([(old, new)], "gossamer_requests_total", ("destination_service",))
    assert got == {("catalog",): pytest.approx(1.0)}
    assert rates([(None, new)], "gossamer_requests_total", ("destination_service",)) == {}
    failed = Scrape(CAT, 6.0, error="OSError: refused")
    assert rates([(old, failed)], "gossamer_requests_total", ("destination_service",)) == {}
    rows = live_stats([(old, failed)])
    assert rows[0].meshed == 0 and rows[0].instances == 1


def test_rates_sum_over_instances():
    a, b = SidecarMetrics(), SidecarMetrics()
    pairs = []
    for target, m, n in ((CAT, a, 10), (CAT2, b, 30)):
        old = snap(target, m, 0.0)
        s = m.requests("destination", "web", "catalog", "mutual_tls")
        for _ in range(n):
            s.record(200, 0.001)
        pairs.append((old, snap(target, m, 10.0)))
    (row,) = live_stats(pairs)
    assert row.rps == pytest.approx(4.0) and row.meshed == 2 and row.instances == 2


def test_edges_with_identities_and_security():
    web, cat = SidecarMetrics(), SidecarMetrics()
    cat.tcp("destination", "web", "catalog", "mutual_tls", ID + "web", ID + "catalog").opened()
    web.tcp("source", "web", "catalog", "mutual_tls", ID + "web", ID + "catalog").opened()
    cat.tcp("destination", "unknown", "catalog", "none", "", ID + "catalog").opened()
    old = [snap(WEB, web, 0.0), snap(CAT, cat, 0.0)]
    traffic(web, cat, 20, fail_every=2)
    plain = cat.requests("destination", "unknown", "catalog", "none")
    for _ in range(10):
        plain.record(200, 0.001)
    new = [snap(WEB, web, 10.0), snap(CAT, cat, 10.0)]
    edges = {(e.source, e.destination): e for e in live_edges(list(zip(old, new, strict=True)))}
    assert set(edges) == {("web", "catalog"), ("unknown", "catalog")}
    e = edges[("web", "catalog")]
    assert e.rps == pytest.approx(2.0) and e.success_rate == pytest.approx(0.5)
    assert e.secured and e.client_identities == [ID + "web"]
    assert e.server_identities == [ID + "catalog"] and e.p99 is not None
    outside = edges[("unknown", "catalog")]
    assert not outside.secured and outside.client_identities == []


def test_routes_count_each_request_once():
    web, cat = SidecarMetrics(), SidecarMetrics()
    old = [snap(WEB, web, 0.0), snap(CAT, cat, 0.0)]
    traffic(web, cat, 30)  # web->catalog seen by both sidecars
    outside = cat.requests("destination", "unknown", "catalog", "none", "inbound", "POST")
    for _ in range(10):
        outside.record(500, 0.001)
    new = [snap(WEB, web, 10.0), snap(CAT, cat, 10.0)]
    rows = live_routes(list(zip(old, new, strict=True)))
    assert [(r.source, r.route, r.method, r.reporter) for r in rows] == [
        ("web", "catalog-route", "GET", "source"),
        ("unknown", "inbound", "POST", "destination"),
    ]
    assert rows[0].rps == pytest.approx(3.0) and rows[1].success_rate == 0.0


def test_certificates_from_the_newest_scrape():
    m = SidecarMetrics()
    m.set_certificate_expiry(ID + "catalog", 1234.5)
    (cert,) = certificates([snap(CAT, m, 0.0), Scrape(WEB, 0.0, error="down")])
    assert cert == {
        "service": "catalog",
        "namespace": "default",
        "instance": "catalog-1",
        "identity": ID + "catalog",
        "expires_at": 1234.5,
    }


def test_bad_exposition_is_a_value_error():
    with pytest.raises(ValueError):
        parse_exposition("gossamer_requests_total{oops 1\n")
    assert parse_exposition("other_metric 1\n") == {}
