"""`/v1/series` parameters, the PromQL of the range path, and the terminal chart."""

from __future__ import annotations

import pytest

from gossamer.errors import ConfigError
from gossamer.observe.chart import BLOCKS, format_value, render_chart
from gossamer.observe.history import edge_key, service_key
from gossamer.observe.series import SeriesLimits, parse_series_query, series_body
from gossamer.observe.series_sources import matrix_points, series_promql

LIMITS = SeriesLimits(max_range=3600, min_step=10)


def parse(**query):
    return parse_series_query(query, LIMITS)


def test_a_service_query_and_its_defaults():
    q = parse(service="catalog", metric="rps")
    assert (q.range_s, q.step_s, q.peer, q.direction) == (3600, 30, None, None)  # 120 points
    assert q.key == service_key("catalog")
    q = parse(service="catalog", metric="success_rate", range="5m", step="10s")
    assert (q.range_s, q.step_s) == (300, 10)
    assert parse(service="catalog", metric="rps", range="5m").step_s == 10


def test_edges_by_direction():
    assert parse(service="catalog", peer="web", metric="rps").key == edge_key("web", "catalog")
    q = parse(service="web", peer="catalog", direction="outbound", metric="rps")
    assert q.key == edge_key("web", "catalog") and q.direction == "outbound"
    q = parse(service="catalog", peer="web", direction="inbound", metric="rps")
    assert q.key == edge_key("web", "catalog")


@pytest.mark.parametrize(
    ("query", "field", "words"),
    [
        ({"metric": "rps"}, "service", "required"),
        ({"service": "a b", "metric": "rps"}, "service", "not a service name"),
        ({"service": "a"}, "metric", "must be one of"),
        ({"service": "a", "metric": "qps"}, "metric", "'qps'"),
        ({"service": "a", "metric": "rps", "range": "forever"}, "range", "duration"),
        ({"service": "a", "metric": "rps", "range": "0s"}, "range", "more than 0s"),
        ({"service": "a", "metric": "rps", "range": "2h"}, "range", "longer than the history"),
        ({"service": "a", "metric": "rps", "step": "5s"}, "step", "finer than"),
        ({"service": "a", "metric": "rps", "range": "1m", "step": "5m"}, "step", "longer than"),
        ({"service": "a", "metric": "rps", "direction": "sideways", "peer": "b"}, "direction", ""),
        ({"service": "a", "metric": "rps", "direction": "inbound"}, "direction", "needs a peer"),
        ({"service": "a", "metric": "rps", "peer": "b/c"}, "peer", "not a service name"),
    ],
)
def test_bad_parameters_name_the_parameter(query, field, words):
    with pytest.raises(ConfigError) as err:
        parse_series_query(query, LIMITS)
    assert err.value.field == field
    assert err.value.message.startswith(f"{field}: ") and words in err.value.message


def test_too_many_points():
    limits = SeriesLimits(max_range=7 * 86400, min_step=1, max_points=11_000)
    with pytest.raises(ConfigError) as err:
        parse_series_query({"service": "a", "metric": "rps", "range": "7d", "step": "1s"}, limits)
    assert err.value.field == "step"


def test_body_shape():
    q = parse(service="catalog", metric="rps", range="5m", step="10s")
    body = series_body(q, [(100.0, 1.23456789), (110.0, None)], source="live", now=115.5)
    assert body["service"] == "catalog" and body["metric"] == "rps"
    assert body["step_s"] == 10 and body["range_s"] == 300 and body["source"] == "live"
    assert body["points"] == [[100.0, 1.234568], [110.0, None]]


def test_promql_of_each_metric():
    q = parse(service="catalog", metric="rps", range="5m", step="10s")
    assert series_promql(q) == (
        'sum(rate(gossamer_requests_total{reporter="destination",'
        'destination_service="catalog"}[30s]))'
    )
    q = parse(service="web", peer="catalog", direction="outbound", metric="success_rate")
    expr = series_promql(q)
    assert 'destination_service="catalog",source_service="web"' in expr
    assert 'classification="success"' in expr and "[60s]" in expr  # 2 * the 30 s step
    total = (
        'sum(rate(gossamer_requests_total{reporter="destination",'
        'destination_service="catalog",source_service="web"}[60s]))'
    )
    assert expr.endswith(f" or {total} * 0) / {total}")  # no success series: 0, not empty
    q = parse(service="catalog", metric="latency_p95_ms")
    assert series_promql(q).startswith("histogram_quantile(0.95, sum by (le)")
    q = parse(service="catalog", metric="tcp_bytes_per_s")
    assert "gossamer_tcp_(sent|received)_bytes_total" in series_promql(q)


def test_matrix_points():
    result = [{"metric": {}, "values": [[10, "1.5"], [20, "NaN"], [30, "+Inf"], [40, "x"]]}]
    assert matrix_points(result) == [(10.0, 1.5), (20.0, None), (30.0, None)]
    assert matrix_points([]) == []


def body(values, metric="rps", range_s=50):
    """Points 10 s apart ending at `end`: the last `len(values)` steps of the range."""
    end = 1_700_000_000 + 10 * len(values)
    points = [[end - 10 * (len(values) - 1 - i), v] for i, v in enumerate(values)]
    return {
        "service": "catalog",
        "metric": metric,
        "range_s": range_s,
        "step_s": 10,
        "source": "live",
        "end": end,
        "points": points,
    }


def bars(lines, height):
    return [row.split("┤" if "┤" in row else "│", 1)[1] for row in lines[1 : height + 1]]


def test_chart_draws_bars_with_axis_labels_and_summary():
    lines = render_chart(body([0.0, 5.0, 10.0, None, 10.0]), width=40, height=4)
    assert lines[0] == "catalog requests/s, last 50s, step 10s (live)"
    assert lines[1].startswith("10 req/s ┤") and lines[4].lstrip().startswith("0 req/s ┤")
    b = bars(lines, 4)
    assert all(len(row) == 5 for row in b)  # one column per step of the range
    assert [row[2] for row in b] == ["█"] * 4  # the max fills the column
    assert [row[3] for row in b] == [" "] * 4  # None: a gap
    assert b[0][1] == " " and b[1][1] == " " and b[2][1] == "█"  # half height
    assert b[3][0] in BLOCKS  # zero still shows a sliver
    assert "└─────" in lines[5]
    assert lines[-1] == "min 0 req/s  avg 6.25 req/s  max 10 req/s  last 10 req/s"


def test_points_sit_at_their_time_in_the_range():
    lines = render_chart(body([4.0, 4.0], range_s=100), width=40, height=2)
    b = bars(lines, 2)
    assert all(len(row) == 10 for row in b)  # 100 s at 10 s: ten columns
    assert b[1] == " " * 8 + "██"  # the two points are the newest steps
    assert lines[-2].split()[0] != lines[-2].split()[-1]  # start and end times


def test_chart_of_a_ratio_and_of_nothing():
    lines = render_chart(body([0.8, 0.75, 0.85], metric="success_rate"), width=10, height=3)
    assert lines[1].startswith("85.0% ┤") and lines[3].startswith("75.0% ┤")
    assert lines[-1].startswith("min 75.0%")
    empty = render_chart(body([]), width=10)
    assert "no points" in empty[-1]
    gaps = render_chart(body([None, None]), width=10)
    assert gaps[-1] == "no data in this range"


def test_chart_averages_when_steps_outnumber_columns():
    lines = render_chart(body([1.0, 3.0] * 50, range_s=1000), width=10, height=2)
    b = bars(lines, 2)
    assert all(len(row) == 10 for row in b)
    assert b[0] == "█" * 10  # every column averages to 2.0: the top


def test_format_value():
    assert format_value("latency_p99_ms", 12.345) == "12.3 ms"
    assert format_value("tcp_bytes_per_s", 123456.0) == "123,456 B/s"
    assert format_value("rps", None) == "-"


async def test_prometheus_series_aligns_the_range_to_the_step():
    from gossamer.observe.series_sources import PrometheusSeries

    class Client:
        calls: list[tuple[str, float, float, float]] = []

        async def query_range(self, expr, start, end, step):
            self.calls.append((expr, start, end, step))
            return [{"metric": {}, "values": [[end - step, "2"], [end, "3"]]}]

    client = Client()
    source = PrometheusSeries(client)  # type: ignore[arg-type]
    q = parse_series_query({"service": "catalog", "metric": "rps", "range": "5m", "step": "10s"},
                           source.limits())  # fmt: skip
    got = await source.series(q, 1_700_000_007.5)
    expr, start, end, step = client.calls[0]
    assert (start, end, step) == (1_700_000_000 - 300, 1_700_000_000, 10)
    assert expr == series_promql(q)
    assert got == [(1_699_999_990.0, 2.0), (1_700_000_000.0, 3.0)]
    assert source.limits().max_range == 7 * 86400
