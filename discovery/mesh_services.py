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
not this module's business and are left alone. The keys, defaults and bounds are the
schema's (gossamer/meshconfig/schema.py), and every independent error is reported, not
only the first (`yamlconf.collecting`): an entry or endpoint with an error is left out.

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
from gossamer.discovery.model import STATIC_OWNER, Endpoint, Service, ServicePort
from gossamer.errors import ConfigError
from gossamer.meshconfig import schema
from gossamer.yamlconf import Node, attempt, collecting, load_document, load_file, report

T = TypeVar("T")

# The control plane's own keys of a service entry: accepted here, read by control/policy.py.
CONTROL_PLANE_KEYS = schema.POLICY_KEYS
SERVICE_KEYS = schema.SERVICE_KEYS
PORT_KEYS = schema.PORT_KEYS
ENDPOINT_KEYS = schema.ENDPOINT_KEYS
_SERVICE = schema.SERVICE


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


def service_key_of(entry: Node) -> ServiceKey:
    """The (namespace, name) of a `services:` entry, validated as DNS-1123 labels."""
    name = _label(_SERVICE["name"].read(entry))
    return ServiceKey(_label(_SERVICE["namespace"].read(entry)), name)


def _port(node: Node) -> ServicePort:
    if isinstance(node.value, int) and not isinstance(node.value, bool):
        return ServicePort(node.integer(minimum=1, maximum=65535))
    node.check_keys(PORT_KEYS)
    fields = schema.PORT
    number = attempt(lambda: fields["port"].integer(node), None)
    protocol = attempt(lambda: fields["protocol"].choice(node), None)
    name_node = fields["name"].read(node)
    name = attempt(lambda: _label(name_node) if name_node.value else "", None)
    if number is None or protocol is None or name is None:
        raise _Reported
    return ServicePort(number, protocol, name)


def _labels(node: Node) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for key, value in node.entries():
        if isinstance(value.value, bool) or not isinstance(value.value, str | int | float):
            report(value.error("label values must be strings or numbers"))
            continue
        out.append((key, str(value.value)))
    return tuple(sorted(out))


def _service_port(item: Node, key: ServiceKey, known: set[int]) -> int:
    number = item.integer(minimum=1, maximum=65535)
    if known and number not in known:
        raise item.error(
            f"service {key} has no port {number}",
            hint=f"its ports are {', '.join(str(p) for p in sorted(known))}",
        )
    return number


def _endpoint(node: Node, key: ServiceKey, known: set[int]) -> Endpoint:
    """One static endpoint; `known` ports are checked (empty: not checked)."""
    node.check_keys(ENDPOINT_KEYS)
    fields = schema.ENDPOINT
    address = attempt(lambda: fields["address"].read(node).string(), None)
    port = attempt(lambda: fields["port"].integer(node), None)
    ports_node = node.child("service_ports", [])
    service_ports = [
        attempt(functools.partial(_service_port, item, key, known), 0)
        for item in ports_node.items()
    ]
    instance = attempt(lambda: node.child("instance_id", f"static-{address}-{port}").string(), None)
    zone = attempt(lambda: fields["zone"].read(node).string(), None)
    node_name = attempt(lambda: fields["node"].read(node).string(), None)
    labels = _labels(node.child("labels", None))
    weight = attempt(lambda: fields["weight"].integer(node), None)
    if address is None or port is None or instance is None or zone is None:
        raise _Reported
    if node_name is None or weight is None or 0 in service_ports:
        raise _Reported
    return _build(
        node,
        lambda: Endpoint(
            service=key,
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


class _Reported(Exception):
    """Raised where an error was already reported (collecting): nothing more to say.
    Not a ConfigError, so `attempt` lets it through to `_guard`."""


def _guard(read: Callable[[], T]) -> T | None:
    """`read()`, or None after a reported error (see yamlconf.attempt)."""
    try:
        return attempt(read, None)
    except _Reported:
        return None


def parse_services(doc: Node) -> MeshServices:
    """The services section of a loaded mesh.yaml document (absent: nothing).

    Every independent error is reported (ConfigErrors), not only the first."""
    with collecting():
        found = _Found()
        for entry in doc.child("services", None).items():
            _guard(functools.partial(_service, entry, found))
    return MeshServices(tuple(found.services), tuple(found.endpoints), found.nodes)


@dataclass
class _Found:
    services: list[Service] = field(default_factory=list)
    endpoints: list[Endpoint] = field(default_factory=list)
    nodes: dict[ServiceKey, Node] = field(default_factory=dict)


def _service(entry: Node, found: _Found) -> None:
    entry.check_keys(SERVICE_KEYS)
    name = _guard(lambda: _label(_SERVICE["name"].read(entry)))
    namespace = _guard(lambda: _label(_SERVICE["namespace"].read(entry)))
    port_nodes = _guard(lambda: list(entry.child("ports", []).items())) or []
    ports = [_guard(functools.partial(_port, p)) for p in port_nodes]
    service = None
    if name is not None and namespace is not None and None not in ports:
        valid = tuple(p for p in ports if p is not None)
        service = _guard(lambda: _build(entry, functools.partial(Service, name, namespace, valid)))
    if service is not None and service.key in found.nodes:
        first = found.nodes[service.key]
        report(
            entry.child("name").error(
                f"service {service.key} is defined twice (first at line {first.line})"
            )
        )
        service = None
    if service is not None:
        found.nodes[service.key] = entry
        found.services.append(service)
    key = service.key if service else ServiceKey(namespace or DEFAULT_NAMESPACE, name or "unnamed")
    known = {p.port for p in service.ports} if service else set()
    seen: dict[str, Node] = {}
    for ep_node in _guard(lambda: list(entry.child("endpoints", []).items())) or []:
        endpoint = _guard(functools.partial(_endpoint, ep_node, key, known))
        if endpoint is None or service is None:
            continue
        if endpoint.instance_id in seen:
            report(
                ep_node.error(
                    f"instance id {endpoint.instance_id!r} is used twice in service "
                    f"{service.key} (first at line {seen[endpoint.instance_id].line})",
                    hint="give each endpoint its own instance_id (or address:port)",
                )
            )
            continue
        seen[endpoint.instance_id] = ep_node
        found.endpoints.append(endpoint)


def load_services(path: str | Path) -> MeshServices:
    """Read mesh.yaml and parse its services section."""
    return parse_services(load_file(path))


def parse_services_text(text: str, *, source: str | None = None) -> MeshServices:
    return parse_services(load_document(text, source=source))
