"""ADAPTER (temporary): the static services and endpoints of mesh.yaml as a RegistryState.

The registry's own mesh-file source (`gossamer.discovery.meshfile`, issue 3) owns the
`services:` discovery fields (name, namespace, ports, endpoints) and writes them into
the store; the control plane then follows the store's watch (`sources.StoreSource`).
Until that lands, `gossamer control` reads those fields with this small parser so it can
serve a mesh declared in mesh.yaml alone. At merge, replace `registry_from_document`'s
caller in `server.py` with the store watch and delete this module.
"""

from __future__ import annotations

from gossamer.discovery.model import (
    PROTOCOLS,
    Endpoint,
    Health,
    RegistryState,
    Service,
    ServiceKey,
    ServicePort,
)
from gossamer.errors import ConfigError
from gossamer.yamlconf import Node

from .config import service_key_of

ENDPOINT_KEYS = (
    "address",
    "port",
    "zone",
    "node",
    "weight",
    "health",
    "instance_id",
    "service_ports",
    "labels",
    "mtls",
)


def registry_from_document(root: Node, revision: int = 1) -> RegistryState:
    """Services and static endpoints declared in a mesh.yaml document."""
    services: dict[ServiceKey, Service] = {}
    endpoints: dict[tuple[ServiceKey, str], Endpoint] = {}
    for entry in root.child("services", None).items():
        key = service_key_of(entry)
        ports = tuple(_port(p) for p in entry.child("ports", None).items())
        try:
            service = Service(key.name, key.namespace, ports)
        except ConfigError as exc:
            raise entry.child("ports").error(exc.detail) from None
        services[key] = service
        for item in entry.child("endpoints", None).items():
            endpoint = _endpoint(item, key, service)
            if (key, endpoint.instance_id) in endpoints:
                raise item.error(f"instance id {endpoint.instance_id!r} is used twice")
            endpoints[(key, endpoint.instance_id)] = endpoint
    return RegistryState(revision, services, endpoints)


def _port(node: Node) -> ServicePort:
    node.check_keys(("port", "protocol", "name"))
    port = node.child("port").integer(minimum=1, maximum=65535)
    protocol = node.child("protocol", "http").choice(PROTOCOLS)
    name = node.child("name", "").string()
    return ServicePort(port, protocol, name)


def _endpoint(node: Node, key: ServiceKey, service: Service) -> Endpoint:
    node.check_keys(ENDPOINT_KEYS)
    address = node.child("address").string()
    port = node.child("port").integer(minimum=1, maximum=65535)
    service_ports = tuple(
        p.integer(minimum=1, maximum=65535) for p in node.child("service_ports", None).items()
    )
    declared = {p.port for p in service.ports}
    for i, p in enumerate(service_ports):
        if p not in declared:
            raise node.child("service_ports").error(
                f"port {p} (entry {i}) is not one of the service's ports"
            )
    labels = tuple(sorted((k, v.string()) for k, v in node.child("labels", None).entries()))
    instance_id = node.child("instance_id", f"{address}:{port}").string()
    zone = node.child("zone", "").string()
    host_node = node.child("node", "").string()
    weight = node.child("weight", 1).integer(minimum=1, maximum=128)
    health = Health(node.child("health", "healthy").choice([h.value for h in Health]))
    mtls = node.child("mtls", False).boolean()
    try:
        return Endpoint(
            service=key,
            instance_id=instance_id,
            address=address,
            port=port,
            service_ports=service_ports,
            zone=zone,
            node=host_node,
            labels=labels,
            weight=weight,
            health=health,
            mtls=mtls,
        )
    except ConfigError as exc:  # the model's own checks name a plain field
        target = node.child(exc.field) if exc.field and node.has(exc.field) else node
        raise target.error(exc.detail) from None
