from __future__ import annotations

from gossamer.contract import identity, xds
from gossamer.contract.identity import ServiceKey
from gossamer.control.translate import hostnames
from gossamer.discovery.model import Service, ServicePort

SVC = Service(
    "catalog", "shop", (ServicePort(9090, "tcp"), ServicePort(8080), ServicePort(8443, "http2"))
)


def test_resource_names():
    key = SVC.key
    assert xds.outbound_cluster(key, 8080) == "outbound|8080||catalog.shop"
    assert xds.inbound_cluster(8080) == "inbound|8080"
    assert identity.spiffe_id("td", key) == "spiffe://td/ns/shop/sa/catalog"
    assert identity.parse_spiffe_id("spiffe://td/ns/shop/sa/catalog") == ("td", key)
    for bad in (
        "http://td/ns/a/sa/b",
        "spiffe://td/ns/a",
        "spiffe:///ns/a/sa/b",
        "spiffe://td/x/a/sa/b",
    ):
        assert identity.parse_spiffe_id(bad) is None
    assert xds.sni("td", key, 8080) == "outbound_.8080_._.catalog.shop.svc.td"


def test_primary_port_is_the_first_http_family_port():
    primary = hostnames.primary_port(SVC)
    assert primary is not None and primary.port == 8080
    assert hostnames.primary_port(Service("db", ports=(ServicePort(5432, "tcp"),))) is None


def test_host_names():
    primary = hostnames.host_names(SVC, SVC.ports[1], "td", bare=True)
    assert primary.with_port == ("catalog:8080", "catalog.shop:8080", "catalog.shop.svc.td:8080")
    assert primary.without_port == ("catalog", "catalog.shop", "catalog.shop.svc.td")
    other = hostnames.host_names(SVC, SVC.ports[2], "td", bare=False)
    assert other.with_port == ("catalog.shop:8443", "catalog.shop.svc.td:8443")
    assert other.without_port == ()


def test_api_listener_names():
    assert hostnames.api_listener_names(SVC, SVC.ports[1], bare=True) == [
        "catalog:8080",
        "catalog.shop:8080",
        "catalog.shop",
        "catalog",
    ]
    assert hostnames.api_listener_names(SVC, SVC.ports[2], bare=False) == ["catalog.shop:8443"]


def test_bare_names_prefer_the_callers_namespace_then_uniqueness():
    keys = [ServiceKey("a", "x"), ServiceKey("b", "x"), ServiceKey("b", "y"), ServiceKey("c", "z")]
    owners = hostnames.bare_owners(keys, "a")
    assert owners == {
        "x": ServiceKey("a", "x"),
        "y": ServiceKey("b", "y"),
        "z": ServiceKey("c", "z"),
    }
    assert "x" not in hostnames.bare_owners(keys, "c")  # ambiguous from namespace c
