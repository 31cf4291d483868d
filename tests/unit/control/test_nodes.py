from __future__ import annotations

import pytest

from gossamer.contract.identity import ServiceKey
from gossamer.control.nodes import resolve_group
from gossamer.control.translate import PROXYLESS, NodeGroup
from gossamer.errors import AuthorizationDenied, RemoteProtocolError
from tests.helpers.ads_client import make_node

TD = "gossamer.local"


def test_metadata_places_sidecars_and_plain_nodes_are_proxyless():
    assert resolve_group(make_node("x"), None, TD) == PROXYLESS
    group = resolve_group(make_node("x", {"GOSSAMER_SERVICE": "web"}), None, TD)
    assert group == NodeGroup(ServiceKey("default", "web")) and group.name == "sidecar:default/web"
    shop = resolve_group(
        make_node("x", {"GOSSAMER_SERVICE": "web", "GOSSAMER_NAMESPACE": "shop"}), None, TD
    )
    assert shop.service == ServiceKey("shop", "web")
    with pytest.raises(RemoteProtocolError):
        resolve_group(make_node("x", {"GOSSAMER_SERVICE": "Not A Label"}), None, TD)


def test_identity_wins_and_must_match_the_claim():
    spiffe = "spiffe://gossamer.local/ns/default/sa/web"
    assert resolve_group(make_node("x"), spiffe, TD) == NodeGroup(ServiceKey("default", "web"))
    with pytest.raises(AuthorizationDenied):
        resolve_group(make_node("x", {"GOSSAMER_SERVICE": "db"}), spiffe, TD)
    with pytest.raises(AuthorizationDenied):
        resolve_group(make_node("x"), "spiffe://other.org/ns/default/sa/web", TD)


def test_the_locality_zone_completes_the_group():
    node = make_node("x")
    node.locality.zone = "zone-a"
    group = resolve_group(node, None, TD)
    assert group == NodeGroup(None, "zone-a") and group.name == "proxyless@zone-a"
    node.metadata.fields["GOSSAMER_SERVICE"].string_value = "web"
    sidecar = resolve_group(node, None, TD)
    assert sidecar == NodeGroup(ServiceKey("default", "web"), "zone-a")
    assert sidecar.name == "sidecar:default/web@zone-a"


def test_the_node_metadata_completes_the_group_and_gateways_have_their_own():
    spiffe = "spiffe://gossamer.local/ns/default/sa/web"
    node = make_node("x", {"GOSSAMER_NODE": "node-1"})
    node.locality.zone = "zone-a"
    group = resolve_group(node, spiffe, TD)
    assert group == NodeGroup(ServiceKey("default", "web"), "zone-a", "node-1")
    assert group.name == "sidecar:default/web@zone-a/node-1"
    gateway = resolve_group(
        make_node("g", {"GOSSAMER_NODE": "node-2"}),
        "spiffe://gossamer.local/ns/gossamer-system/sa/gateway",
        TD,
    )
    assert gateway.gateway and gateway.name == "gateway:node-2"
    with pytest.raises(RemoteProtocolError):
        resolve_group(make_node("x", {"GOSSAMER_NODE": "Node_1"}), spiffe, TD)
    # without a certificate nobody is the gateway (or any gossamer-system service)
    claim = {"GOSSAMER_SERVICE": "gateway", "GOSSAMER_NAMESPACE": "gossamer-system"}
    with pytest.raises(AuthorizationDenied):
        resolve_group(make_node("x", claim), None, TD)
