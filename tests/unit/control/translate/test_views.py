from __future__ import annotations

from typing import Any

from gossamer.contract import xds
from gossamer.contract.identity import ServiceKey
from gossamer.control.cache import Resource, Snapshot
from gossamer.control.config import mesh_from_mapping
from gossamer.control.translate import PROXYLESS, MeshInputs, NodeGroup, Translator
from gossamer.control.translate.views import tcp_destinations
from gossamer.discovery.model import Endpoint, RegistryState, Service, ServicePort

TD = "gossamer.local"
WEB = ServiceKey("default", "web")
API = ServiceKey("default", "api")
VAULT = ServiceKey("default", "vault")


def inputs(bundle: bytes | None = b"PEM") -> MeshInputs:
    mesh = mesh_from_mapping(
        {
            "services": [
                {"name": "web"},
                {"name": "api"},
                {"name": "vault", "authorization": {"allow": [f"spiffe://{TD}/ns/default/sa/api"]}},
            ]
        }
    )
    services = {
        WEB: Service("web", ports=(ServicePort(8080),)),
        API: Service("api", ports=(ServicePort(9090, "grpc"), ServicePort(5432, "tcp"))),
        VAULT: Service("vault", ports=(ServicePort(8200),)),
    }
    endpoints = {
        (API, "a1"): Endpoint(API, "a1", "10.0.0.1", 15006, mtls=True),
        (VAULT, "v1"): Endpoint(VAULT, "v1", "10.0.0.2", 8200),
    }
    return MeshInputs(RegistryState(3, services, endpoints), TD, mesh.policies, bundle)


def snapshot_of(view) -> Snapshot:
    return Snapshot.build({t: [Resource.of(n, m) for n, m in by.items()] for t, by in view.items()})


def test_sidecar_view():
    view = Translator(inputs()).view(NodeGroup(WEB))
    clusters = set(view[xds.CLUSTER])
    assert "outbound|9090||api.default" in clusters and "outbound|8080||web.default" in clusters
    assert "outbound|8200||vault.default" not in clusters  # web may not call vault
    assert {xds.PASSTHROUGH_CLUSTER, "inbound|8080"} <= clusters
    assert set(view[xds.ENDPOINT]) == {
        "outbound|8080||web.default",
        "outbound|9090||api.default",
        "outbound|5432||api.default",
    }
    assert set(view[xds.LISTENER]) == {xds.OUTBOUND_LISTENER, xds.INBOUND_LISTENER}
    assert set(view[xds.ROUTE]) == {xds.OUTBOUND_ROUTE}
    assert set(view[xds.SECRET]) == {xds.ROOT_CA_SECRET}
    assert snapshot_of(view).consistency_errors() == []
    api_view = Translator(inputs()).view(NodeGroup(API))
    assert "outbound|8200||vault.default" in api_view[xds.CLUSTER]


def test_proxyless_view():
    view = Translator(inputs()).view(PROXYLESS)
    assert set(view[xds.LISTENER]) >= {
        "api:9090",
        "api.default:9090",
        "api",
        "api.default",
        "vault:8200",
    }
    assert not any(name.endswith(":5432") for name in view[xds.LISTENER])  # no API listener for TCP
    assert "outbound|8200||vault.default" in view[xds.CLUSTER]
    assert view[xds.ROUTE] == {}
    assert snapshot_of(view).consistency_errors() == []


def test_without_a_trust_bundle_nothing_needs_one():
    translator = Translator(inputs(bundle=None))
    view = translator.view(NodeGroup(WEB))
    assert xds.INBOUND_LISTENER not in view[xds.LISTENER]
    assert view[xds.SECRET] == {}
    cluster: Any = view[xds.CLUSTER]["outbound|9090||api.default"]
    assert not cluster.transport_socket_matches
    assert snapshot_of(view).consistency_errors() == []


def test_unknown_service_sidecar_gets_outbound_only():
    view = Translator(inputs()).view(NodeGroup(ServiceKey("default", "newcomer")))
    assert set(view[xds.LISTENER]) == {xds.OUTBOUND_LISTENER}


def test_equal_inputs_give_identical_versions():
    one = snapshot_of(Translator(inputs()).view(NodeGroup(WEB)))
    two = snapshot_of(Translator(inputs()).view(NodeGroup(WEB)))
    assert one.versions() == two.versions()
    groups = [g.name for g in Translator(inputs()).groups()]
    assert groups == [
        "proxyless",
        "sidecar:default/api",
        "sidecar:default/vault",
        "sidecar:default/web",
    ]


def test_tcp_destinations_skip_shared_ports():
    a = Service("a", ports=(ServicePort(5432, "tcp"), ServicePort(6379, "tcp")))
    b = Service("b", ports=(ServicePort(5432, "tcp"),))
    assert tcp_destinations([a, b]) == {6379: "outbound|6379||a.default"}


def test_proxyless_clusters_carry_no_transport_socket_matches():
    translator = Translator(inputs())
    sidecar: Any = translator.view(NodeGroup(WEB))[xds.CLUSTER]["outbound|9090||api.default"]
    proxyless: Any = translator.view(PROXYLESS)[xds.CLUSTER]["outbound|9090||api.default"]
    assert len(sidecar.transport_socket_matches) == 2  # mTLS to sidecars, plaintext else
    assert not proxyless.transport_socket_matches and not proxyless.HasField("transport_socket")


def test_resources_are_encoded_once_per_kind_and_locality():
    translator = Translator(inputs())
    a1, a2 = translator.view(NodeGroup(None, "zone-a")), translator.view(NodeGroup(None, "zone-a"))
    b = translator.view(NodeGroup(None, "zone-b"))
    name = "outbound|9090||api.default"
    assert a1[xds.CLUSTER][name] is b[xds.CLUSTER][name]  # clusters: one per kind
    assert a1[xds.ENDPOINT][name] is a2[xds.ENDPOINT][name]  # endpoints: one per zone
    assert a1[xds.ENDPOINT][name] is not b[xds.ENDPOINT][name]
    web_a = translator.view(NodeGroup(WEB, "zone-a"))
    assert web_a[xds.CLUSTER][name] is not a1[xds.CLUSTER][name]
    assert web_a[xds.ENDPOINT][name] is a1[xds.ENDPOINT][name]
