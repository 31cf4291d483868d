"""Read the `services:` section of mesh.yaml into typed services and static endpoints.

    services:
      - name: catalog
        namespace: default             # optional, default "default"
        ports: [{port: 8080, protocol: http}]
        endpoints:                     # optional static endpoints
          - {address: 127.0.0.1, port: 8080, zone: zone-a, weight: 1}

Every error names the field path and the line (`mesh.yaml:7: services[0].ports[0].port:
must be between 1 and 65535, got 70000`). The control plane owns more per-service keys
in the same entries (`CONTROL_PLANE_KEYS`): they are accepted here but not interpreted;
`MeshServices.nodes` hands each entry's YAML node to whoever reads them, so their errors
carry lines too. Any other key is an error. Other top-level sections of mesh.yaml are
not this module's business and are left alone.

Static endpoints are owned by `static` and carry plain traffic (mtls=False): they are
instances without a sidecar. Their instance id defaults to `static-<address>-<port>`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from gossamer.contract.identity import DEFAULT_NAMESPACE, ServiceKey, check_label
from gossamer.discovery.model import PROTOCOLS, STATIC_OWNER, Endpoint, Service, ServicePort
from gossamer.errors import ConfigError
from gossamer.yamlconf import Node, load_document, load_file

T = TypeVar("T")

CONTROL_PLANE_KEYS = (
    "lb_policy",
    "timeout",
    "retries",
    "authorization",
    "health_check",
    "outlier_detection",
    "circuit_breakers",
    "hash_header",
)
SERVICE_KEYS = ("name", "namespace", "ports", "endpoints", *CONTROL_PLANE_KEYS)
PORT_KEYS = ("port", "protocol", "name")
ENDPOINT_KEYS = (
    "address",
    "port",
    "zone",
    "node",
    "weight",
    "labels",
    "instance_id",
    "service_ports",
)


@dataclass(frozen=True)
class MeshServices:
    """What the services section declares."""

    services: tuple[Service, ...] = ()
    endpoints: tuple[Endpoint, ...] = ()
    # each service's entry in the file, for the control plane's own keys
    nodes: Mapping[ServiceKey, Node] = field(default_factory=dict)

    def service(self, key: ServiceKey) -> Service | None:
        return next((s for s in self.services if s.key == key), None)


def _build(node: Node, factory: Callable[[], T]) -> T:
    """Construct a model object; its ConfigError is re-raised at the right YAML field."""
    try:
        return factory()
    except ConfigError as exc:
        target = node
        if exc.field and node.has(exc.field):
            target = node.child(exc.field)
        raise target.error(exc.detail, hint=exc.hint) from None


def _label(node: Node) -> str:
    value = node.string()
    return _build(node, lambda: check_label(value, node.path))


def _port(node: Node) -> ServicePort:
    if isinstance(node.value, int) and not isinstance(node.value, bool):
        return ServicePort(node.integer(minimum=1, maximum=65535))
    node.check_keys(PORT_KEYS)
    number = node.child("port").integer(minimum=1, maximum=65535)
    protocol = node.child("protocol", "http").choice(PROTOCOLS)
    name_node = node.child("name", "")
    name = _label(name_node) if name_node.value else ""
    return ServicePort(number, protocol, name)


def _labels(node: Node) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for key, value in node.entries():
        if isinstance(value.value, bool) or not isinstance(value.value, str | int | float):
            raise value.error("label values must be strings or numbers")
        out.append((key, str(value.value)))
    return tuple(sorted(out))


def _endpoint(node: Node, service: Service) -> Endpoint:
    node.check_keys(ENDPOINT_KEYS)
    address = node.child("address").string()
    port = node.child("port").integer(minimum=1, maximum=65535)
    known = {p.port for p in service.ports}
    service_ports: list[int] = []
    for item in node.child("service_ports", []).items():
        number = item.integer(minimum=1, maximum=65535)
        if known and number not in known:
            raise item.error(
                f"service {service.key} has no port {number}",
                hint=f"its ports are {', '.join(str(p) for p in sorted(known))}",
            )
        service_ports.append(number)
    instance = node.child("instance_id", f"static-{address}-{port}").string()
    zone = node.child("zone", "").string()
    node_name = node.child("node", "").string()
    labels = _labels(node.child("labels", None))
    weight = node.child("weight", 1).integer(minimum=1, maximum=128)
    return _build(
        node,
        lambda: Endpoint(
            service=service.key,
            instance_id=instance,
            address=address,
            port=port,
            service_ports=tuple(service_ports),
            zone=zone,
            node=node_name,
            labels=labels,
            weight=weight,
            owner=STATIC_OWNER,
            mtls=False,
        ),
    )


def parse_services(doc: Node) -> MeshServices:
    """The services section of a loaded mesh.yaml document (absent: nothing)."""
    section = doc.child("services", None)
    services: list[Service] = []
    endpoints: list[Endpoint] = []
    nodes: dict[ServiceKey, Node] = {}
    for entry in section.items():
        entry.check_keys(SERVICE_KEYS)
        name = _label(entry.child("name"))
        namespace_node = entry.child("namespace", DEFAULT_NAMESPACE)
        namespace = _label(namespace_node)
        ports_node = entry.child("ports", [])
        ports = tuple(_port(p) for p in ports_node.items())
        service = _build(entry, functools.partial(Service, name, namespace, ports))
        if service.key in nodes:
            first = nodes[service.key]
            raise entry.child("name").error(
                f"service {service.key} is defined twice (first at line {first.line})"
            )
        nodes[service.key] = entry
        services.append(service)
        seen: dict[str, Node] = {}
        for ep_node in entry.child("endpoints", []).items():
            endpoint = _endpoint(ep_node, service)
            if endpoint.instance_id in seen:
                raise ep_node.error(
                    f"instance id {endpoint.instance_id!r} is used twice in service "
                    f"{service.key} (first at line {seen[endpoint.instance_id].line})",
                    hint="give each endpoint its own instance_id (or address:port)",
                )
            seen[endpoint.instance_id] = ep_node
            endpoints.append(endpoint)
    return MeshServices(tuple(services), tuple(endpoints), nodes)


def load_services(path: str | Path) -> MeshServices:
    """Read mesh.yaml and parse its services section."""
    return parse_services(load_file(path))


def parse_services_text(text: str, *, source: str | None = None) -> MeshServices:
    return parse_services(load_document(text, source=source))
