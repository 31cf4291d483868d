"""Realistic meshes translated by the control plane's real Translator, packed as the
sidecar receives them (shared by the xds_* unit tests)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf import any_pb2
from google.protobuf.message import Message

from gossamer.contract import xds
from gossamer.contract.identity import ServiceKey
from gossamer.contract.vocabulary import Health
from gossamer.control.config import mesh_from_mapping
from gossamer.control.translate import MeshInputs, NodeGroup, Translator
from gossamer.discovery.model import Endpoint, RegistryState, Service, ServicePort
from gossamer.proxy.config import NodeInfo, ProxyConfig
from gossamer.proxy.xds import clusters as xds_clusters
from gossamer.proxy.xds import endpoints as xds_endpoints
from gossamer.proxy.xds import listeners as xds_listeners
from gossamer.proxy.xds import translate as xds_translate

TD = "gossamer.local"
BUNDLE = b"-----BEGIN CERTIFICATE-----\nnot parsed by the translator\n-----END CERTIFICATE-----\n"


def key(name: str, namespace: str = "default") -> ServiceKey:
    return ServiceKey(namespace, name)


def spiffe(name: str, namespace: str = "default") -> str:
    return f"spiffe://{TD}/ns/{namespace}/sa/{name}"


POLICIES: list[dict[str, Any]] = [
    {"name": "web"},
    {
        "name": "catalog",
        "lb_policy": "least_request",
        "timeout": "3s",
        "retries": {
            "attempts": 2,
            "per_try_timeout": "1s",
            "on": ["connect-failure", "reset", 503],
            "budget_percent": 25,
        },
        "authorization": {"allow": [spiffe("web")]},
    },
    {"name": "inventory", "lb_policy": "ring_hash", "hash_header": "x-user"},
    {"name": "db", "lb_policy": "random"},
    {"name": "echo"},
    {"name": "legacy", "lb_policy": "ewma", "timeout": "0s"},
    {"name": "vault", "authorization": {"allow": [spiffe("catalog")]}},
    {
        "name": "audit",
        "namespace": "ops",
        "authorization": {"allow": [f"spiffe://{TD}/ns/default/sa/*"]},
    },
]

SERVICES = {
    key("web"): Service("web", ports=(ServicePort(8080),)),
    key("catalog"): Service("catalog", ports=(ServicePort(8080),)),
    key("inventory"): Service("inventory", ports=(ServicePort(9000), ServicePort(9001, "tcp"))),
    key("db"): Service("db", ports=(ServicePort(5432, "tcp"),)),
    key("echo"): Service("echo", ports=(ServicePort(50051, "grpc"),)),
    key("legacy"): Service("legacy", ports=(ServicePort(7000),)),
    key("vault"): Service("vault", ports=(ServicePort(8200),)),
    key("audit", "ops"): Service("audit", "ops", ports=(ServicePort(8080),)),
}


def endpoints() -> dict[tuple[ServiceKey, str], Endpoint]:
    out = {}
    for i, zone in enumerate(["zone-a", "zone-b", "zone-a"]):
        k = key("catalog")
        out[(k, f"c{i}")] = Endpoint(k, f"c{i}", f"10.0.0.{i + 1}", 15006, zone=zone, mtls=True)
    out[(key("legacy"), "l1")] = Endpoint(key("legacy"), "l1", "10.0.1.1", 7000, weight=3)
    out[(key("web"), "w1")] = Endpoint(key("web"), "w1", "10.0.2.1", 15006, mtls=True)
    inv = key("inventory")
    out[(inv, "i1")] = Endpoint(inv, "i1", "10.0.3.1", 15006, mtls=True, health=Health.DRAINING)
    return out


def translator(
    policies: list[dict[str, Any]] | None = None,
    services: Mapping[ServiceKey, Service] | None = None,
    bundle: bytes | None = BUNDLE,
) -> Translator:
    mesh = mesh_from_mapping({"trust_domain": TD, "services": policies or POLICIES})
    state = RegistryState(7, dict(services or SERVICES), endpoints())
    return Translator(MeshInputs(state, TD, mesh.policies, bundle))


def packed(messages: Mapping[str, Message] | list[Message]) -> list[any_pb2.Any]:
    out = []
    for message in messages.values() if isinstance(messages, Mapping) else messages:
        item = any_pb2.Any()
        item.Pack(message)
        out.append(item)
    return out


def view(service: str, namespace: str = "default", **kw: Any) -> dict[str, list[any_pb2.Any]]:
    resources = translator(**kw).view(NodeGroup(key(service, namespace)))
    return {type_url: packed(by_name) for type_url, by_name in resources.items()}


def pieces_of(resources: Mapping[str, list[any_pb2.Any]]) -> xds_translate.Pieces:
    return xds_translate.Pieces(
        clusters=xds_clusters.decode_clusters(resources[xds.CLUSTER]),
        endpoints=xds_endpoints.decode_endpoints(resources[xds.ENDPOINT]),
        endpoints_seen=True,
        listeners=xds_listeners.decode_listeners(resources[xds.LISTENER], TD),
        routes=xds_listeners.decode_routes(resources[xds.ROUTE]),
    )


def config_for(
    service: str, namespace: str = "default", app_ports: Any = (), **kw: Any
) -> ProxyConfig:
    node = NodeInfo(service, namespace, trust_domain=TD)
    return xds_translate.assemble(node, pieces_of(view(service, namespace, **kw)), app_ports)


def make_ca_bundle() -> bytes:
    """The trust bundle of a fresh mesh CA."""
    import tempfile
    from pathlib import Path

    from tests.helpers.pki import make_ca

    with tempfile.TemporaryDirectory() as tmp:
        return make_ca(Path(tmp)).trust_bundle_pem()
