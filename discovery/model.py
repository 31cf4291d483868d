"""The registry's data model: services, endpoints, health, and change events.

Plain frozen dataclasses with validation at construction, shared by the stores, the
control plane's translation to xDS, and the sources (mesh.yaml, sidecar registration,
compose files). Names are DNS-1123 labels, as in Kubernetes; the service key, health
states and port protocols are the wire contract's (`gossamer.contract`).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from gossamer.contract.identity import DEFAULT_NAMESPACE, ServiceKey, check_label
from gossamer.contract.vocabulary import Health, Protocol
from gossamer.errors import ConfigError

PROTOCOLS = tuple(p.value for p in Protocol)


def check_port(value: int, field_name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ConfigError(f"port must be between 1 and 65535, got {value!r}", field=field_name)
    return value


@dataclass(frozen=True)
class ServicePort:
    port: int
    protocol: str = "http"
    name: str = ""

    def __post_init__(self) -> None:
        check_port(self.port, "port")
        if self.protocol not in PROTOCOLS:
            raise ConfigError(
                f"unknown protocol {self.protocol!r}; use one of {', '.join(PROTOCOLS)}",
                field="protocol",
            )


@dataclass(frozen=True)
class Service:
    name: str
    namespace: str = DEFAULT_NAMESPACE
    ports: tuple[ServicePort, ...] = ()

    def __post_init__(self) -> None:
        check_label(self.name, "name")
        check_label(self.namespace, "namespace")
        seen: set[int] = set()
        for p in self.ports:
            if p.port in seen:
                raise ConfigError(f"port {p.port} is listed twice", field="ports")
            seen.add(p.port)

    @property
    def key(self) -> ServiceKey:
        return ServiceKey(self.namespace, self.name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "namespace": self.namespace,
            "ports": [{"port": p.port, "protocol": p.protocol, "name": p.name} for p in self.ports],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Service:
        return cls(
            name=d["name"],
            namespace=d.get("namespace", DEFAULT_NAMESPACE),
            ports=tuple(
                ServicePort(p["port"], p.get("protocol", "http"), p.get("name", ""))
                for p in d.get("ports", ())
            ),
        )


STATIC_OWNER = "static"


@dataclass(frozen=True)
class Endpoint:
    """One instance of a service.

    `address:port` is where mesh traffic for the instance goes: the sidecar's inbound
    port when the instance has a sidecar (`mtls=True`), the app itself otherwise (a
    static endpoint in mesh.yaml). `service_ports` lists the service ports this instance
    serves (empty: all of them). `owner` is `static` or `lease:<id>` for an instance a
    sidecar registered; `admin_port`, when set, is the sidecar's admin port (127.0.0.1
    by default: shown, never scraped) and `metrics_port` its metrics-only port, which
    Prometheus (`/v1/http_sd`) and the control plane scrape.
    """

    service: ServiceKey
    instance_id: str
    address: str
    port: int
    service_ports: tuple[int, ...] = ()
    zone: str = ""
    node: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    weight: int = 1
    health: Health = Health.HEALTHY
    owner: str = STATIC_OWNER
    mtls: bool = False
    admin_port: int | None = None
    metrics_port: int | None = None
    other_addresses: tuple[str, ...] = ()  # the instance's addresses on other networks

    def __post_init__(self) -> None:
        if not self.instance_id or len(self.instance_id) > 253:
            raise ConfigError("instance id must be 1-253 characters", field="instance_id")
        try:
            ipaddress.ip_address(self.address)
        except ValueError:
            if not _is_hostname(self.address):
                raise ConfigError(
                    f"{self.address!r} is not an IP address or host name", field="address"
                ) from None
        for other in self.other_addresses:
            try:
                ipaddress.ip_address(other)
            except ValueError:
                raise ConfigError(
                    f"{other!r} is not an IP address", field="other_addresses"
                ) from None
        check_port(self.port, "port")
        for p in self.service_ports:
            check_port(p, "service_ports")
        if self.admin_port is not None:
            check_port(self.admin_port, "admin_port")
        if self.metrics_port is not None:
            check_port(self.metrics_port, "metrics_port")
        if isinstance(self.weight, bool) or not 1 <= self.weight <= 128:
            raise ConfigError(
                f"weight must be between 1 and 128, got {self.weight}", field="weight"
            )
        if not isinstance(self.health, Health):
            object.__setattr__(self, "health", Health(self.health))

    def serves(self, service_port: int) -> bool:
        return not self.service_ports or service_port in self.service_ports

    def to_dict(self) -> dict[str, Any]:
        return {
            "service": self.service.name,
            "namespace": self.service.namespace,
            "instance_id": self.instance_id,
            "address": self.address,
            "port": self.port,
            "service_ports": list(self.service_ports),
            "zone": self.zone,
            "node": self.node,
            "labels": dict(self.labels),
            "weight": self.weight,
            "health": self.health.value,
            "owner": self.owner,
            "mtls": self.mtls,
            "admin_port": self.admin_port,
            "metrics_port": self.metrics_port,
            "other_addresses": list(self.other_addresses),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Endpoint:
        return cls(
            service=ServiceKey(d.get("namespace", DEFAULT_NAMESPACE), d["service"]),
            instance_id=d["instance_id"],
            address=d["address"],
            port=d["port"],
            service_ports=tuple(d.get("service_ports", ())),
            zone=d.get("zone", ""),
            node=d.get("node", ""),
            labels=tuple(sorted((str(k), str(v)) for k, v in d.get("labels", {}).items())),
            weight=d.get("weight", 1),
            health=Health(d.get("health", "healthy")),
            owner=d.get("owner", STATIC_OWNER),
            mtls=bool(d.get("mtls", False)),
            admin_port=d.get("admin_port"),
            metrics_port=d.get("metrics_port"),
            other_addresses=tuple(d.get("other_addresses", ())),
        )


_HOST_LABEL = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?$")


def _is_hostname(value: str) -> bool:
    if not value or len(value) > 253:
        return False
    return all(_HOST_LABEL.match(part) for part in value.rstrip(".").split("."))


class EventKind(StrEnum):
    PUT_SERVICE = "put_service"
    DELETE_SERVICE = "delete_service"
    PUT_ENDPOINT = "put_endpoint"
    DELETE_ENDPOINT = "delete_endpoint"
    RESYNC = "resync"


@dataclass(frozen=True)
class RegistryState:
    """Everything in the registry at one revision."""

    revision: int
    services: dict[ServiceKey, Service] = field(default_factory=dict)
    endpoints: dict[tuple[ServiceKey, str], Endpoint] = field(default_factory=dict)

    def endpoints_of(self, key: ServiceKey) -> list[Endpoint]:
        return sorted(
            (e for (k, _), e in self.endpoints.items() if k == key), key=lambda e: e.instance_id
        )


@dataclass(frozen=True)
class Event:
    """One change, at `revision`. A RESYNC carries the whole state instead of a change:
    the watcher fell behind (or its revision was compacted) and must start over from it."""

    kind: EventKind
    revision: int
    service: Service | None = None
    endpoint: Endpoint | None = None
    key: ServiceKey | None = None
    instance_id: str | None = None
    state: RegistryState | None = None
