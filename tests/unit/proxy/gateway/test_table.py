"""The gateway's routing table and metrics, and the contract's SNI parsing (pure)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from gossamer.contract import xds
from gossamer.contract.identity import ServiceKey, gateway_key
from gossamer.contract.vocabulary import Health
from gossamer.proxy.config import Cluster, Endpoint, NodeInfo, ProxyConfig
from gossamer.proxy.gateway.metrics import GatewayMetrics
from gossamer.proxy.gateway.table import Miss, RouteTable, Target

TD = "gossamer.local"
CATALOG = ServiceKey("default", "catalog")


def spiffe(namespace: str, name: str) -> str:
    return f"spiffe://{TD}/ns/{namespace}/sa/{name}"


def config() -> ProxyConfig:
    name = xds.outbound_cluster(CATALOG, 8080)
    other = xds.outbound_cluster(ServiceKey("shop", "cart"), 9090)
    gateways = xds.outbound_cluster(gateway_key(), 15443)
    return ProxyConfig(
        node=NodeInfo("gateway", "gossamer-system", trust_domain=TD),
        clusters={
            name: Cluster(name, "catalog", 8080, identity=spiffe("default", "catalog")),
            other: Cluster(other, "cart", 9090, namespace="shop", identity=spiffe("shop", "cart")),
            gateways: Cluster(
                gateways,
                "gateway",
                15443,
                namespace="gossamer-system",
                identity=spiffe("gossamer-system", "gateway"),
            ),
        },
        endpoints={
            name: (
                Endpoint("10.0.2.11", 15006, node="node-2", weight=2),
                Endpoint("10.0.2.12", 15006, node="node-2"),
                Endpoint("10.0.2.13", 15006, node="node-2", health=Health.UNHEALTHY),
                Endpoint("10.0.2.14", 8080, node="node-2", tls=False),  # no sidecar
                Endpoint("10.0.1.11", 15006, node="node-1", aliases=("172.18.0.4",)),
            ),
            other: (Endpoint("10.0.3.11", 15006, node="node-3"),),
            gateways: (Endpoint("10.0.5.1", 15443, node="node-5"),),
        },
    )


def test_routes_by_sni_to_healthy_local_instances_by_weight():
    table = RouteTable.build(config(), "node-2")
    sni = xds.sni(TD, CATALOG, 8080)
    picks = [table.route(sni) for _ in range(6)]
    assert all(isinstance(p, Target) for p in picks)
    addresses = [p.address for p in picks if isinstance(p, Target)]
    assert sorted(addresses) == ["10.0.2.11"] * 4 + ["10.0.2.12"] * 2
    first = picks[0]
    assert isinstance(first, Target) and first.service == "catalog.default" and first.port == 8080


def test_misses_say_why():
    table = RouteTable.build(config(), "node-2")
    cart = table.route(xds.sni(TD, ServiceKey("shop", "cart"), 9090))
    assert isinstance(cart, Miss) and cart.reason == "no_endpoint"  # only on node-3
    for name in (None, "", "example.com", xds.sni("other.domain", CATALOG, 8080),
                 xds.sni(TD, CATALOG, 9999), xds.sni(TD, gateway_key(), 15443)):  # fmt: skip
        found = table.route(name)
        assert isinstance(found, Miss) and found.reason == "unknown_sni", name


def test_peer_nodes_from_every_registered_address():
    table = RouteTable.build(config(), "node-2")
    assert table.peer_node("10.0.1.11") == "node-1"
    assert table.peer_node("::ffff:10.0.1.11") == "node-1"
    assert table.peer_node("172.18.0.4") == "node-1"
    assert table.peer_node("10.0.5.1") == "node-5"  # a gateway's address
    assert table.peer_node("192.0.2.1") == "unknown"
    summary = table.summary()
    assert summary["routes"][xds.sni(TD, CATALOG, 8080)] == ["10.0.2.11:15006", "10.0.2.12:15006"]


def test_parse_sni_round_trips_and_refuses_other_names():
    assert xds.parse_sni(xds.sni(TD, CATALOG, 8080), TD) == (CATALOG, 8080)
    for name in ("outbound_.80_._.a.svc." + TD, "outbound_.x_._.a.b.svc." + TD,
                 "outbound_.0_._.a.b.svc." + TD, "outbound_.70000_._.a.b.svc." + TD,
                 "inbound_.80_._.a.b.svc." + TD, "outbound_.80_._.a.b.c.svc." + TD,
                 "outbound_.80_._.a.b.svc.other"):  # fmt: skip
        assert xds.parse_sni(name, TD) is None, name


@given(st.text(max_size=80))
def test_parse_sni_never_crashes(name):
    found = xds.parse_sni(name, TD)
    if found is not None:
        assert xds.sni(TD, *found) == name


def test_metrics_render_as_prometheus_text():
    metrics = GatewayMetrics()
    metrics.routed("catalog.default", "node-1")
    metrics.moved("catalog.default", "node-1", "received", 100)
    metrics.moved("catalog.default", "node-1", "sent", 300)
    metrics.reject("unknown_sni")
    metrics.active = 2
    metrics.instances = lambda: {"catalog.default": 2}
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics.render())
        for s in family.samples
    }
    peer = (("peer_node", "node-1"), ("service", "catalog.default"))
    assert samples[("gossamer_gateway_connections_total", peer)] == 1
    assert samples[("gossamer_gateway_bytes_total", (("direction", "sent"), *peer))] == 300
    assert samples[("gossamer_gateway_rejected_total", (("reason", "unknown_sni"),))] == 1
    assert samples[("gossamer_gateway_rejected_total", (("reason", "not_tls"),))] == 0
    assert samples[("gossamer_gateway_active_connections", ())] == 2
    assert samples[("gossamer_gateway_route_instances", (("service", "catalog.default"),))] == 2
