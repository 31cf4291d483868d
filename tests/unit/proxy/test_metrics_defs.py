"""The sidecar's metric families, read back through Prometheus' own text parser."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gossamer.proxy.telemetry.metrics import (
    BUCKETS,
    REQUEST_LABELS,
    SidecarMetrics,
    classify,
    normalize_method,
)


def scrape(metrics: SidecarMetrics) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def value(samples, **labels) -> float:
    found = [v for ls, v in samples if all(ls.get(k) == w for k, w in labels.items())]
    assert found, labels
    return float(sum(found))


def test_requests_by_code_and_classification():
    m = SidecarMetrics()
    series = m.requests("source", "web", "catalog", "mutual_tls", "items", "GET")
    assert m.requests("source", "web", "catalog", "mutual_tls", "items", "GET") is series
    for status in (200, 200, 404, 503, 0):
        series.record(status, 0.002)
    series.record(200, 0.002, failed=True)  # e.g. a gRPC error inside a 200
    s = scrape(m)["gossamer_requests_total"]
    assert set(s[0][0]) == set(REQUEST_LABELS)
    assert value(s, response_code="200", classification="success") == 2
    assert value(s, response_code="200", classification="failure") == 1
    assert value(s, response_code="404", classification="success") == 1
    assert value(s, response_code="503", classification="failure") == 1
    assert value(s, response_code="0", classification="failure") == 1
    assert value(s, reporter="source", source_service="web", destination_service="catalog") == 6


def test_duration_histogram_is_cumulative_and_merged_over_routes():
    m = SidecarMetrics()
    a = m.requests("destination", "web", "catalog", "mutual_tls", "a", "GET")
    b = m.requests("destination", "web", "catalog", "mutual_tls", "b", "POST")
    a.record(200, 0.0004)  # first bucket
    a.record(200, 0.003)
    b.record(200, 0.3)
    b.record(200, 60.0)  # beyond the last bound: only +Inf
    s = scrape(m)
    buckets = {ls["le"]: v for ls, v in s["gossamer_request_duration_seconds_bucket"]}
    assert list(buckets) == [*(repr(b) for b in BUCKETS), "+Inf"]
    assert buckets["0.0005"] == 1 and buckets["0.005"] == 2 and buckets["0.5"] == 3
    assert buckets["10.0"] == 3 and buckets["+Inf"] == 4
    assert value(s["gossamer_request_duration_seconds_count"]) == 4
    assert value(s["gossamer_request_duration_seconds_sum"]) == pytest.approx(60.3034)
    assert BUCKETS[0] == 0.0005 and BUCKETS[-1] == 10.0
    routes = s["gossamer_route_requests_total"]
    assert value(routes, route="a", method="GET") == 2
    assert value(routes, route="b", method="POST") == 2


def test_labels_stay_bounded():
    m = SidecarMetrics()
    m.requests("source", "", "", "none", "", "BREW").record(200, 0.01)
    (labels, _), *_ = scrape(m)["gossamer_route_requests_total"]
    assert labels["method"] == "other" and labels["route"] == "default"
    assert labels["source_service"] == labels["destination_service"] == "unknown"
    with pytest.raises(ValueError, match="reporter"):
        m.requests("sideways", "a", "b", "none")
    with pytest.raises(ValueError, match="security"):
        m.requests("source", "a", "b", "tls-ish")
    assert normalize_method("GET") == "GET" and normalize_method("get") == "other"


def test_tcp_connections_and_bytes():
    m = SidecarMetrics()
    conn = m.tcp("destination", "web", "catalog", "mutual_tls", "spiffe://a/web", "spiffe://a/cat")
    conn.opened()
    conn.opened()
    conn.sent += 100
    conn.closed(sent=20, received=7)
    assert conn.open_now == 1
    s = scrape(m)
    labels = {"source_principal": "spiffe://a/web", "destination_principal": "spiffe://a/cat"}
    assert value(s["gossamer_tcp_connections_opened_total"], **labels) == 2
    assert value(s["gossamer_tcp_connections_closed_total"], **labels) == 1
    assert value(s["gossamer_tcp_sent_bytes_total"], **labels) == 120
    assert value(s["gossamer_tcp_received_bytes_total"], **labels) == 7


def test_events_xds_and_certificate():
    m = SidecarMetrics()
    m.retry("catalog")
    m.retry("catalog")
    m.retry_budget_exhausted("catalog")
    m.outlier_ejection("catalog")
    m.xds_update("type.googleapis.com/envoy.config.cluster.v3.Cluster")
    m.xds_update("EDS")
    m.xds_nack("envoy.config.listener.v3.Listener")
    m.xds_nack("SomethingElse")
    m.set_certificate_expiry("spiffe://a/old", 1.0)
    m.set_certificate_expiry("spiffe://a/web", 1_700_000_000.0)
    m.add_gauge("gossamer_test_gauge", "a gauge", lambda: 3)
    s = scrape(m)
    assert value(s["gossamer_retries_total"], destination_service="catalog") == 2
    assert value(s["gossamer_retry_budget_exhausted_total"]) == 1
    assert value(s["gossamer_outlier_ejections_total"], reason="consecutive_5xx") == 1
    assert value(s["gossamer_xds_updates_total"], type="CDS") == 1
    assert value(s["gossamer_xds_updates_total"], type="EDS") == 1
    assert value(s["gossamer_xds_nacks_total"], type="LDS") == 1
    assert value(s["gossamer_xds_nacks_total"], type="other") == 1
    certs = s["gossamer_certificate_expiry_timestamp_seconds"]
    assert certs == [({"identity": "spiffe://a/web"}, 1_700_000_000.0)]
    assert s["gossamer_test_gauge"] == [({}, 3.0)]


def test_classify():
    assert classify(200) == "success" and classify(404) == "success"
    assert classify(500) == "failure" and classify(0) == "failure"
    assert classify(200, grpc_status=14) == "failure" and classify(200, grpc_status=0) == "success"


def test_empty_sidecar_still_renders_every_family():
    text = SidecarMetrics().render().decode()
    for name in (
        "gossamer_requests_total",
        "gossamer_request_duration_seconds",
        "gossamer_tcp_connections_opened_total",
        "gossamer_retries_total",
        "gossamer_xds_nacks_total",
        "gossamer_certificate_expiry_timestamp_seconds",
    ):
        assert f"# TYPE {name.removesuffix('_total')}" in text, name


def test_grpc_statuses_are_counted_with_bounded_labels():
    m = SidecarMetrics()
    series = m.requests("source", "web", "greeter", "mutual_tls", "r", "POST")
    for status in (0, 0, 14, None, 99):
        series.grpc_status(status)
    s = scrape(m)["gossamer_grpc_responses_total"]
    assert value(s, grpc_status="0", destination_service="greeter") == 2
    assert value(s, grpc_status="14") == 1
    assert value(s, grpc_status="unknown") == 2  # no status (reset) or out of range
    assert {ls["grpc_status"] for ls, _ in s} == {"0", "14", "unknown"}
    plain = SidecarMetrics()
    plain.requests("source", "web", "catalog", "mutual_tls").record(200, 0.001)
    assert "gossamer_grpc_responses_total" not in scrape(plain)


def _reference(pairs):
    """What counting one response at a time gives: by status and class, per bucket
    (bisect over the bounds, `le` semantics), and the sum."""
    from bisect import bisect_left

    ok: dict[int, int] = {}
    failed: dict[int, int] = {}
    buckets = [0] * (len(BUCKETS) + 1)
    for status, seconds in pairs:
        table = failed if status >= 500 or status <= 0 else ok
        table[status] = table.get(status, 0) + 1
        buckets[bisect_left(BUCKETS, seconds)] += 1
    return ok, failed, buckets, sum(s for _, s in pairs)


@pytest.mark.parametrize("statuses", [(200,), (200, 200, 200, 404, 503, 0, 302)])
def test_bulk_counting_matches_counting_one_at_a_time(statuses):
    """Responses wait on `pending` and are counted in bulk (sorted durations cut at the
    bounds): the counts must equal one-at-a-time counting, bounds themselves included,
    whether read mid-batch or after several automatic folds."""
    import random

    from gossamer.proxy.telemetry.metrics import FOLD_AT

    rnd = random.Random(3)
    m = SidecarMetrics()
    series = m.requests("source", "web", "catalog", "mutual_tls", "items", "GET")
    pairs = []
    for i in range(3 * FOLD_AT + 7):  # several folds, then a partial batch
        seconds = BUCKETS[i % len(BUCKETS)] if i % 5 == 0 else rnd.uniform(0, 12.0)
        pairs.append((statuses[i % len(statuses)], seconds))
        series.record(*pairs[-1])
        assert len(series.pending) < FOLD_AT  # never more waits than that
        if i == FOLD_AT + 3:  # a read folds what waits
            ok, failed, buckets, total = _reference(pairs)
            assert (series.ok, series.failed, series.buckets) == (ok, failed, buckets)
            assert not series.pending
    ok, failed, buckets, total = _reference(pairs)
    assert series.ok == ok and series.failed == failed
    assert series.buckets == buckets and series.count == len(pairs)
    assert series.sum == pytest.approx(total, rel=1e-12)
    s = scrape(m)
    assert value(s["gossamer_requests_total"]) == len(pairs)
    assert value(s["gossamer_request_duration_seconds_count"]) == len(pairs)
