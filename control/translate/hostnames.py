"""The host names and LDS names by which callers reach a service's ports.

Sidecars route by host (`catalog`, `catalog.default`, `catalog.default:8080`, ...);
proxyless gRPC clients ask LDS for their target's authority, so each service port also
gets API listeners `svc:port`, `svc.ns:port` (and, for the primary port, `svc`,
`svc.ns`). Names both ends must agree on are in `gossamer.contract.xds`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gossamer.contract.identity import ServiceKey
from gossamer.contract.vocabulary import Protocol
from gossamer.discovery.model import Service, ServicePort


def http_ports(service: Service) -> list[ServicePort]:
    return [p for p in service.ports if Protocol(p.protocol).is_http]


def primary_port(service: Service) -> ServicePort | None:
    """The port a request without an explicit port goes to: the first HTTP-family port."""
    ports = http_ports(service)
    return ports[0] if ports else None


def bare_owners(keys: Iterable[ServiceKey], caller_namespace: str) -> dict[str, ServiceKey]:
    """Which service a bare name (`catalog`) means for a caller: the one in the caller's
    namespace, else the only service of that name in the mesh (ambiguous names: none)."""
    by_name: dict[str, list[ServiceKey]] = {}
    for key in keys:
        by_name.setdefault(key.name, []).append(key)
    owners: dict[str, ServiceKey] = {}
    for name, candidates in by_name.items():
        local = [k for k in candidates if k.namespace == caller_namespace]
        if local:
            owners[name] = local[0]
        elif len(candidates) == 1:
            owners[name] = candidates[0]
    return owners


@dataclass(frozen=True)
class HostNames:
    """The host names of one service port, with and without the port."""

    with_port: tuple[str, ...]
    without_port: tuple[str, ...]

    def all(self) -> list[str]:
        return list(self.with_port + self.without_port)


def host_names(service: Service, port: ServicePort, trust_domain: str, *, bare: bool) -> HostNames:
    """`svc.ns`, `svc.ns.svc.<trust domain>` (and `svc` when `bare`), each with `:port`;
    the names without a port only for the service's primary port."""
    key = service.key
    names = [f"{key.name}.{key.namespace}", f"{key.name}.{key.namespace}.svc.{trust_domain}"]
    if bare:
        names.insert(0, key.name)
    with_port = tuple(f"{n}:{port.port}" for n in names)
    primary = primary_port(service)
    without = tuple(names) if primary is not None and primary.port == port.port else ()
    return HostNames(with_port, without)


def api_listener_names(service: Service, port: ServicePort, *, bare: bool) -> list[str]:
    """LDS names a proxyless gRPC client may ask for this port (its target's authority)."""
    key = service.key
    qualified = f"{key.name}.{key.namespace}"
    names = [f"{qualified}:{port.port}"]
    if bare:
        names.insert(0, f"{key.name}:{port.port}")
    primary = primary_port(service)
    if primary is not None and primary.port == port.port:
        names.append(qualified)
        if bare:
            names.append(key.name)
    return names
