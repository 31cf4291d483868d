"""Table cells for stat, edges and top."""

from __future__ import annotations

from gossamer.observe.model import Edge, RouteStat, ServiceStat
from gossamer.observe.render import edge_table, stat_table, top_table


def test_stat_cells():
    row = ServiceStat("web", "default", 2, 3, 12.345, 0.98765, 0.0021, 0.02, 0.5, 4).to_dict()
    idle = ServiceStat("idle").to_dict()
    assert stat_table([row, idle]) == [
        ["web", "2/3", "98.77%", "12.35rps", "2.1ms", "20ms", "500ms", "4"],
        ["idle", "0/0", "-", "0.00rps", "-", "-", "-", "-"],
    ]


def test_edge_cells_shorten_identities():
    e = Edge("web", "catalog", 1.0, 1.0, 0.003, True,
             ["spiffe://td/ns/shop/sa/web"], ["spiffe://td/ns/shop/sa/catalog"]).to_dict()  # fmt: skip
    assert edge_table([e]) == [
        ["web", "catalog", "web.shop", "catalog.shop", "√", "1.00rps", "100.00%", "3.0ms"]
    ]
    assert edge_table([e], full_ids=True)[0][2] == "spiffe://td/ns/shop/sa/web"


def test_top_cells():
    r = RouteStat("web", "catalog", "items", "GET", 3.0, 0.5).to_dict()
    assert top_table([r]) == [["web", "catalog", "items", "GET", "3.00rps", "50.00%"]]
