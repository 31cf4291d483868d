"""Mesh names for the sidecar's DNS (proxy/routing/mesh_names.py) and the listener's
pure decision (proxy/listeners/dns.py `decide`, resolv.conf and --dns-upstream)."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gossamer.errors import UsageError
from gossamer.proxy.config import Cluster, Endpoint
from gossamer.proxy.listeners.dns import (
    DROP,
    FORWARD,
    decide,
    parse_upstreams,
    upstreams_from,
)
from gossamer.proxy.routing import mesh_names
from gossamer.proxy.routing.mesh_names import VIP_NETWORK, VipAllocator, build
from gossamer.proxy.transport import dns_wire as wire

TD = "gossamer.local"


def cluster(service: str, port: int, namespace: str = "default") -> tuple[str, Cluster]:
    name = f"outbound|{port}||{service}.{namespace}"
    spiffe = f"spiffe://{TD}/ns/{namespace}/sa/{service}"
    return name, Cluster(name, service, port, namespace=namespace, identity=spiffe)


def table(node: str = "node-1", namespace: str = "default") -> mesh_names.MeshNames:
    clusters = dict(
        [
            cluster("catalog", 8080),  # only on node 2 (its gateway)
            cluster("catalog", 9090),
            cluster("web", 8080),  # on this node
            cluster("billing", 8080, "payments"),  # one namespace only, another node
            cluster("auth", 8080),  # on node 3, and in another namespace
            cluster("auth", 8080, "infra"),
            cluster("ledger", 5432),  # no endpoint at all (not started, or not meshed)
        ]
    )
    gateway = Endpoint("10.0.0.12", 15443, node="node-2", priority=1)
    endpoints = {
        "outbound|8080||catalog.default": (gateway,),
        "outbound|9090||catalog.default": (gateway,),
        "outbound|8080||web.default": (Endpoint("10.0.0.11", 15006, node="node-1"),),
        "outbound|8080||billing.payments": (Endpoint("10.0.0.13", 15443, node="node-3"),),
        "outbound|8080||auth.default": (Endpoint("10.0.0.13", 15443, node="node-3"),),
        "outbound|8080||auth.infra": (Endpoint("10.0.0.13", 15443, node="node-3"),),
    }
    clusters["PassthroughCluster"] = Cluster("PassthroughCluster", "", 1, tls=False)
    return build(clusters, endpoints, own_node=node, own_namespace=namespace,
                 trust_domain=TD, allocator=VipAllocator())  # fmt: skip


def test_services_of_other_nodes_are_answered_local_ones_are_not():
    names = table()
    vip = names.lookup("catalog")
    assert vip is not None and ipaddress.IPv4Address(vip) in VIP_NETWORK
    for alias in ("catalog.default", "catalog.default.svc", f"catalog.default.svc.{TD}",
                  "CATALOG.Default.", f"catalog.default.svc.{TD}."):  # fmt: skip
        assert names.lookup(alias) == vip, alias
    assert names.lookup("web") is None and "web" in names.local and "web.default" in names.local
    assert names.lookup("billing") == names.lookup("billing.payments") is not None
    # auth exists in default (own namespace) and infra: the short name is default's
    assert names.lookup("auth") == names.lookup("auth.default") != names.lookup("auth.infra")
    assert names.lookup("inventory") is None and names.lookup("catalog.other") is None
    # no endpoint anywhere: whatever the local resolver says (before the mesh, as now)
    assert names.lookup("ledger") is None and "ledger.default" in names.local
    assert names.lookup("passthroughcluster") is None


def test_every_service_port_at_its_vip_names_the_cluster():
    names = table()
    vip = names.lookup("catalog")
    assert vip is not None
    assert names.destinations[(vip, 8080)] == "outbound|8080||catalog.default"
    assert names.destinations[(vip, 9090)] == "outbound|9090||catalog.default"
    # a local service has a VIP too (a cached answer keeps working when it moves)
    web = [k for k, v in names.destinations.items() if v == "outbound|8080||web.default"]
    assert len(web) == 1 and ipaddress.IPv4Address(web[0][0]) in VIP_NETWORK
    assert len({address for address, _ in names.destinations}) == 6  # one per service


def test_without_nodes_instances_with_a_sidecar_are_local_static_endpoints_are_not():
    # a sidecar without --node gets zone-only assignments: no endpoint names a node
    clusters = dict([cluster("catalog", 8080), cluster("ledger", 5432)])
    endpoints = {
        "outbound|8080||catalog.default": (Endpoint("10.0.0.11", 15006),),
        "outbound|5432||ledger.default": (Endpoint("192.0.2.9", 5432, tls=False),),
    }
    names = build(clusters, endpoints, own_node="", own_namespace="default",
                  trust_domain=TD, allocator=VipAllocator())  # fmt: skip
    assert names.lookup("catalog") is None and "catalog" in names.local
    assert names.lookup("ledger") is not None  # a static endpoint: no local name for it


def test_the_same_services_get_the_same_vips_in_a_new_sidecar():
    assert table().answers == table().answers


def test_vips_are_sticky_and_collision_free():
    allocator = VipAllocator(ipaddress.IPv4Network("240.240.0.0/29"))  # 6 usable
    given = {key: allocator.allocate(key) for key in "abcdef"}
    assert len(set(given.values())) == 6 and None not in given.values()
    assert all(ipaddress.IPv4Address(v) not in (ipaddress.IPv4Address("240.240.0.0"),
               ipaddress.IPv4Address("240.240.0.7")) for v in given.values())  # fmt: skip
    assert allocator.allocate("g") is None  # full
    assert allocator.allocate("c") == given["c"]  # kept


@given(st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=300, unique=True))
def test_allocation_never_reuses_an_address(keys: list[str]):
    allocator = VipAllocator()
    addresses = [allocator.allocate(k) for k in keys]
    assert len(set(addresses)) == len(keys)
    assert all(ipaddress.IPv4Address(a) in VIP_NETWORK for a in addresses if a)


def test_decide_answers_forwards_or_refuses():
    names = table()
    vip = names.lookup("catalog")
    assert vip is not None
    reply = decide(wire.build_query("catalog", ident=9), names, 30)
    assert isinstance(reply, bytes)
    back = wire.parse_response(reply)
    assert back.id == 9 and back.addresses == (socket.inet_aton(vip),)
    nodata = decide(wire.build_query("catalog.default", qtype=wire.TYPE_AAAA), names, 30)
    assert isinstance(nodata, bytes) and wire.parse_response(nodata).addresses == ()
    assert decide(wire.build_query("web"), names, 30) == FORWARD  # local: Compose knows it
    assert decide(wire.build_query("example.com"), names, 30) == FORWARD
    chaos = bytearray(wire.build_query("catalog"))
    chaos[-1] = 3  # class CH
    assert decide(bytes(chaos), names, 30) == FORWARD
    status = bytearray(wire.build_query("catalog"))
    status[2] |= 0x10  # opcode 2 (STATUS)
    assert decide(bytes(status), names, 30) == FORWARD
    formerr = decide(b"\x00\x05\x01\x00\x00\x00" + b"\x00" * 6, names, 30)
    assert isinstance(formerr, bytes) and formerr[3] & 0xF == wire.RCODE_FORMERR
    assert decide(b"\x01", names, 30) == DROP
    assert decide(reply, names, 30) == DROP  # a response is never answered


def test_resolv_conf_and_the_upstream_flag():
    text = """# generated
search example.com
nameserver 127.0.0.11
nameserver fe80::1%eth0
nameserver not-an-address
options ndots:0
nameserver 10.0.0.2
nameserver 10.0.0.3
"""
    assert upstreams_from(text) == [("127.0.0.11", 53), ("fe80::1", 53), ("10.0.0.2", 53)]
    assert parse_upstreams("10.0.0.2, 127.0.0.1:5353") == [("10.0.0.2", 53), ("127.0.0.1", 5353)]
    with pytest.raises(UsageError, match="not an IPv4"):
        parse_upstreams("dns.example")
    with pytest.raises(UsageError, match="not a port"):
        parse_upstreams("10.0.0.2:99999")
