"""The dashboard's document: graph, certificates and summary."""

from __future__ import annotations

from gossamer.observe.model import Edge, ServiceStat
from gossamer.observe.overview import certificate_rows, graph, jaeger_link, overview


def test_graph_nodes_edges_and_links():
    stats = [ServiceStat("web", "default", 1, 1, 5.0, 0.8), ServiceStat("catalog", "default", 1, 2)]
    edges = [Edge("unknown", "web", 5.0, 0.8), Edge("web", "catalog", 4.0, 1.0, secured=True)]
    g = graph(stats, edges, [("web", "default"), ("catalog", "default"), ("idle", "shop")],
              "http://jaeger:16686/")  # fmt: skip
    nodes = {n["id"]: n for n in g["nodes"]}
    assert set(nodes) == {"web", "catalog", "idle", "(outside)"}
    assert nodes["(outside)"]["outside"] and nodes["(outside)"]["traces_url"] is None
    assert nodes["web"]["traces_url"] == (
        "http://jaeger:16686/search?service=web&limit=20&lookback=1h"
    )
    assert nodes["idle"]["stat"] is None and nodes["idle"]["namespace"] == "shop"
    assert nodes["catalog"]["instances"] == 2
    assert [(e["source"], e["destination"]) for e in g["edges"]] == [
        ("(outside)", "web"),
        ("web", "catalog"),
    ]
    assert jaeger_link(None, "web") is None


def test_certificate_states():
    rows = certificate_rows(
        [
            {"instance": "a", "expires_at": 1000.0},
            {"instance": "b", "expires_at": 100.0 + 3600},
            {"instance": "c", "expires_at": 50.0},
        ],
        now=100.0,
        warn_before=7200,
    )
    assert [(r["instance"], r["status"]) for r in rows] == [
        ("c", "expired"),
        ("a", "warning"),
        ("b", "warning"),
    ]
    assert rows[0]["seconds_left"] == -50.0
    ok = certificate_rows([{"instance": "d", "expires_at": 1e9}], now=0, warn_before=10)
    assert ok[0]["status"] == "ok"


def test_summary():
    doc = overview(
        source="live",
        window=60,
        now=100.0,
        stats=[ServiceStat("web", rps=2.5), ServiceStat("db", rps=0.5)],
        edges=[],
        services=[],
        certificates=[{"instance": "x", "expires_at": 110.0}],
        sidecars=[{"state": "NACK"}, {"state": "ACK"}],
        jaeger_url=None,
        warn_before=3600,
        errors=["prometheus down"],
    )
    assert doc["summary"] == {
        "services": 2, "rps": 3.0, "sidecars": 2, "nacks": 1, "certificates_warning": 1,
    }  # fmt: skip
    assert doc["errors"] == ["prometheus down"] and doc["source"] == "live"
