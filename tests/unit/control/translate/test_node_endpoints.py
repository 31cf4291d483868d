"""Node-aware EDS: own node's instances direct, other nodes' through their gateways."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from gossamer.contract import xds
from gossamer.contract.identity import ServiceKey, gateway_key
from gossamer.contract.vocabulary import Health
from gossamer.control.translate import endpoints
from gossamer.control.translate.views import (
    PROXYLESS,
    MeshInputs,
    NodeGroup,
    Translator,
    gateways_by_node,
)
from gossamer.discovery.model import Endpoint, RegistryState, Service, ServicePort

KEY = ServiceKey("default", "catalog")
CLUSTER = xds.outbound_cluster(KEY, 8080)


def inst(name, node, zone="zone-a", health=Health.HEALTHY, address=None, weight=1):
    return Endpoint(KEY, name, address or f"10.0.{int(node[-1]) if node else 0}.5", 15006, zone=zone,
                    node=node, health=health, mtls=True, weight=weight)  # fmt: skip


def gw(node, zone="zone-a", health=Health.HEALTHY):
    n = int(node[-1])
    return Endpoint(gateway_key(), f"{node}-gw", f"10.0.{n}.1", 15443, zone=zone, node=node,
                    health=health, mtls=True)  # fmt: skip


GATEWAYS = {n: gw(n) for n in ("node-2", "node-3")}


def rows(cla):
    """(zone, node, priority, locality weight, [(address:port, weight, health)])"""
    return [
        (
            loc.locality.zone,
            loc.locality.sub_zone,
            loc.priority,
            loc.load_balancing_weight.value,
            [
                (
                    f"{e.endpoint.address.socket_address.address}:"
                    f"{e.endpoint.address.socket_address.port_value}",
                    e.load_balancing_weight.value,
                    e.health_status,
                )
                for e in loc.lb_endpoints
            ],
        )
        for loc in cla.endpoints
    ]


def test_own_node_direct_others_at_their_gateway_one_endpoint_per_node():
    members = [
        inst("c1", "node-1"),
        inst("c2a", "node-2"),
        inst("c2b", "node-2", address="10.0.2.6"),
        inst("c2c", "node-2", address="10.0.2.7", health=Health.UNHEALTHY),
        inst("c3", "node-3", zone="zone-b"),
    ]
    cla = endpoints.load_assignment(CLUSTER, members, 8080, "zone-a", "node-1", GATEWAYS)
    assert rows(cla) == [
        ("zone-a", "node-1", 0, 1, [("10.0.1.5:15006", 1, 1)]),
        # weight = node-2's healthy instances; the unhealthy one does not count
        ("zone-a", "node-2", 1, 2, [("10.0.2.1:15443", 2, 1)]),
        ("zone-b", "node-3", 2, 1, [("10.0.3.1:15443", 1, 1)]),
    ]
    [lb] = cla.endpoints[1].lb_endpoints
    assert lb.metadata.filter_metadata[xds.TRANSPORT_SOCKET_MATCH][xds.TLS_MODE_KEY] == "istio"


def test_a_node_without_a_gateway_keeps_direct_endpoints():
    members = [inst("c1", "node-1"), inst("c4", "node-4"), inst("c5", "", zone="zone-b")]
    cla = endpoints.load_assignment(CLUSTER, members, 8080, "zone-a", "node-1", GATEWAYS)
    assert rows(cla) == [
        ("zone-a", "node-1", 0, 1, [("10.0.1.5:15006", 1, 1)]),
        ("zone-a", "node-4", 1, 1, [("10.0.4.5:15006", 1, 1)]),
        ("zone-b", "", 2, 1, [("10.0.0.5:15006", 1, 1)]),
    ]


def test_a_remote_node_with_no_healthy_instance_is_unhealthy_at_its_gateway():
    members = [inst("c2", "node-2", health=Health.DRAINING)]
    cla = endpoints.load_assignment(CLUSTER, members, 8080, "zone-a", "node-1", GATEWAYS)
    assert rows(cla) == [("zone-a", "node-2", 0, 1, [("10.0.2.1:15443", 1, 2)])]


def test_priorities_have_no_gaps():
    # nothing on the own node, nothing in the own zone: the rest is priority 0
    cla = endpoints.load_assignment(CLUSTER, [inst("c3", "node-3", zone="zone-b")], 8080,
                                    "zone-a", "node-1", GATEWAYS)  # fmt: skip
    assert [loc.priority for loc in cla.endpoints] == [0]


def test_gateway_weight_is_capped():
    members = [inst(f"c{i}", "node-2", address=f"10.0.2.{i + 10}") for i in range(200)]
    cla = endpoints.load_assignment(CLUSTER, members, 8080, "zone-a", "node-1", GATEWAYS)
    assert rows(cla)[0][4][0][1] == 128


def test_without_a_node_the_zone_only_shape_is_unchanged():
    members = [inst("c1", "node-1"), inst("c2", "node-2"), inst("c3", "node-3", zone="zone-b")]
    with_gateways = endpoints.load_assignment(CLUSTER, members, 8080, "zone-a", "", GATEWAYS)
    assert with_gateways == endpoints.load_assignment(CLUSTER, members, 8080, "zone-a")
    assert [(loc.locality.zone, loc.locality.sub_zone, loc.priority)
            for loc in with_gateways.endpoints] == [("zone-a", "", 0), ("zone-b", "", 1)]  # fmt: skip


@given(
    st.lists(
        st.tuples(st.sampled_from(["node-1", "node-2", "node-3", "node-4", ""]),
                  st.sampled_from(["zone-a", "zone-b", ""]),
                  st.sampled_from(list(Health))),
        max_size=12,
    ),
    st.sampled_from(["node-1", "node-2", "node-9"]),
    st.sampled_from(["zone-a", "zone-b", ""]),
)  # fmt: skip
def test_composition_properties(spec, local_node, local_zone):
    members = [
        Endpoint(KEY, f"i{i}", f"10.1.{i}.1", 15006, zone=z, node=n, health=h, mtls=True)
        for i, (n, z, h) in enumerate(spec)
    ]
    cla = endpoints.load_assignment(CLUSTER, members, 8080, local_zone, local_node, GATEWAYS)
    priorities = sorted({loc.priority for loc in cla.endpoints})
    assert priorities == list(range(len(priorities)))  # no gaps (gRPC NACKs them)
    addresses = [
        e.endpoint.address.socket_address.address for loc in cla.endpoints for e in loc.lb_endpoints
    ]
    remote = {n for n, _, _ in spec if n and n != local_node and n in GATEWAYS}
    direct = [m for m in members if m.node not in remote]
    assert len(addresses) == len(direct) + len(remote)  # one endpoint per remote node
    for loc in cla.endpoints:
        assert loc.load_balancing_weight.value >= 1
        if loc.locality.sub_zone == local_node:
            assert loc.priority == 0
    if any(m.node == local_node for m in members):
        assert any(loc.priority == 0 and loc.locality.sub_zone == local_node
                   for loc in cla.endpoints)  # fmt: skip


def state_with_nodes():
    catalog = Service("catalog", "default", (ServicePort(8080, "http"),))
    web = Service("web", "default", (ServicePort(8080, "http"),))
    eps = [inst("c1", "node-1"), inst("c2", "node-2"), gw("node-2"), gw("node-3")]
    eps.append(gw("node-4", health=Health.UNHEALTHY))
    return RegistryState(
        1,
        {catalog.key: catalog, web.key: web},
        {(e.service, e.instance_id): e for e in eps},
    )


def test_gateways_by_node_keeps_healthy_ones():
    assert sorted(gateways_by_node(state_with_nodes())) == ["node-2", "node-3"]


def test_sidecar_views_by_node_and_proxyless_untouched():
    translator = Translator(MeshInputs(state_with_nodes(), "gossamer.local", trust_bundle=b"x"))
    web = ServiceKey("default", "web")
    on_1: Any = translator.view(NodeGroup(web, "zone-a", "node-1"))[xds.ENDPOINT][CLUSTER]
    assert [(loc.locality.sub_zone, loc.priority) for loc in on_1.endpoints] == [
        ("node-1", 0), ("node-2", 1)]  # fmt: skip
    on_2: Any = translator.view(NodeGroup(web, "zone-a", "node-2"))[xds.ENDPOINT][CLUSTER]
    assert rows(on_2) == [
        ("zone-a", "node-1", 1, 1, [("10.0.1.5:15006", 1, 1)]),  # node-1 has no gateway
        ("zone-a", "node-2", 0, 1, [("10.0.2.5:15006", 1, 1)]),  # its own: direct
    ]
    proxyless: Any = translator.view(PROXYLESS)[xds.ENDPOINT][CLUSTER]
    assert all(not loc.locality.sub_zone for loc in proxyless.endpoints)
    assert NodeGroup(web, "zone-a", "node-1").name == "sidecar:default/web@zone-a/node-1"


def test_gateway_view_every_instance_direct_and_the_gateways_cluster():
    translator = Translator(MeshInputs(state_with_nodes(), "gossamer.local", trust_bundle=b"x"))
    view = translator.view(NodeGroup(gateway_key(), "zone-a", "node-2"))
    assert NodeGroup(gateway_key(), "zone-a", "node-2").name == "gateway:node-2@zone-a"
    cla: Any = view[xds.ENDPOINT][CLUSTER]
    found = {(loc.locality.sub_zone, e.endpoint.address.socket_address.port_value)
             for loc in cla.endpoints for e in loc.lb_endpoints}  # fmt: skip
    assert found == {("node-1", 15006), ("node-2", 15006)}  # never through a gateway
    gateways = xds.outbound_cluster(gateway_key(), 15443)
    assert gateways in view[xds.CLUSTER] and gateways in view[xds.ENDPOINT]
    assert xds.OUTBOUND_LISTENER in view[xds.LISTENER] and xds.OUTBOUND_ROUTE in view[xds.ROUTE]
