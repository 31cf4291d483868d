"""PromQL builders and the shaping of Prometheus' answers."""

from __future__ import annotations

import pytest

from gossamer.errors import UsageError
from gossamer.observe import promql


def sample(value, **labels):
    return {"metric": labels, "value": [1700000000.0, str(value)]}


def test_stat_queries():
    q = promql.stat_queries(60)
    assert q["requests"] == (
        "sum by (destination_service, classification) "
        '(rate(gossamer_requests_total{reporter="destination"}[60s]))'
    )
    assert q["p99"].startswith("histogram_quantile(0.99, sum by (destination_service, le)")
    assert q["up"] == 'sum by (gossamer_service, gossamer_namespace) (up{gossamer_service!=""})'
    one = promql.stat_queries(30, "catalog")
    assert 'destination_service="catalog"' in one["requests"] and "[30s]" in one["requests"]
    assert 'gossamer_service="catalog"' in one["targets"]


def test_hostile_names_and_windows_are_refused():
    with pytest.raises(UsageError):
        promql.stat_queries(60, 'x"} or vector(1) #')
    for bad in (1, float("nan"), float("inf")):
        with pytest.raises(UsageError):
            promql.window_text(bad)


def test_stat_rows():
    results = {
        "requests": [
            sample(3, destination_service="catalog", classification="success"),
            sample(1, destination_service="catalog", classification="failure"),
        ],
        "tcp_open": [sample(2, destination_service="catalog")],
        "up": [
            sample(1, gossamer_service="catalog", gossamer_namespace="shop"),
            sample(0, gossamer_service="web", gossamer_namespace="shop"),
        ],
        "targets": [
            sample(2, gossamer_service="catalog", gossamer_namespace="shop"),
            sample(1, gossamer_service="web", gossamer_namespace="shop"),
        ],
        "p50": [sample(0.002, destination_service="catalog")],
        "p95": [sample("NaN", destination_service="catalog")],
        "p99": [sample("+Inf", destination_service="catalog")],
    }
    rows = {r.name: r for r in promql.stat_rows(results)}
    c = rows["catalog"]
    assert (c.rps, c.success_rate, c.meshed, c.instances, c.namespace) == (4, 0.75, 1, 2, "shop")
    assert (c.p50, c.p95, c.p99, c.tcp_connections) == (0.002, None, None, 2)
    w = rows["web"]
    assert w.rps == 0 and w.success_rate is None and w.meshed == 0 and w.instances == 1
    assert [r.name for r in promql.stat_rows(results, "web")] == ["web"]
    assert promql.stat_rows({}) == []


def test_edges_rows():
    results = {
        "requests": [
            sample(
                2,
                source_service="web",
                destination_service="catalog",
                classification="success",
                connection_security_policy="mutual_tls",
            ),
            sample(
                2,
                source_service="web",
                destination_service="catalog",
                classification="failure",
                connection_security_policy="mutual_tls",
            ),
            sample(
                1,
                source_service="unknown",
                destination_service="web",
                classification="success",
                connection_security_policy="none",
            ),
        ],
        "p99": [sample(0.05, source_service="web", destination_service="catalog")],
        "identities": [
            sample(
                3,
                source_service="web",
                destination_service="catalog",
                source_principal="spiffe://td/ns/default/sa/web",
                destination_principal="spiffe://td/ns/default/sa/catalog",
            ),
            sample(
                1,
                source_service="unknown",
                destination_service="web",
                source_principal="unknown",
                destination_principal="spiffe://td/ns/default/sa/web",
            ),
            sample(
                1,
                source_service="web",
                destination_service="gone",
                source_principal="x",
                destination_principal="y",
            ),
        ],
    }
    edges = {(e.source, e.destination): e for e in promql.edges_rows(results)}
    assert set(edges) == {("web", "catalog"), ("unknown", "web")}
    e = edges[("web", "catalog")]
    assert e.rps == 4 and e.success_rate == 0.5 and e.secured and e.p99 == 0.05
    assert e.client_identities == ["spiffe://td/ns/default/sa/web"]
    assert edges[("unknown", "web")].client_identities == []
    assert not edges[("unknown", "web")].secured


def test_top_rows_rank_and_deduplicate():
    def route(value, rep, src, dst, r, cls="success"):
        return sample(value, reporter=rep, source_service=src, destination_service=dst,
                      route=r, method="GET", classification=cls)  # fmt: skip

    results = {
        "routes": [
            route(5, "source", "web", "catalog", "items"),
            route(5, "destination", "web", "catalog", "inbound"),  # same requests again
            route(9, "destination", "unknown", "web", "inbound"),
            route(1, "destination", "unknown", "web", "inbound", "failure"),
            route(0, "source", "web", "inventory", "stock"),
        ]
    }
    rows = promql.top_rows(results)
    assert [(r.source, r.destination, r.rps) for r in rows] == [
        ("unknown", "web", 10),
        ("web", "catalog", 5),
    ]
    assert rows[0].success_rate == 0.9
    assert len(promql.top_rows(results, limit=1)) == 1
    assert "rate(gossamer_route_requests_total[60s])" in promql.top_queries(60)["routes"]
