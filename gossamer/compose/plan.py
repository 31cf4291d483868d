"""Decide what `gossamer inject` does to a compose file, before touching it.

`make_plan` reads the loaded file and the options and returns a `Plan`: which services
get a sidecar and in which shape, the application port and the ports to declare in
mesh.yaml, which ports stay reachable from the host, which services are left alone
and why, and the networks the mesh's own services must join. It raises `ConfigError`
(with the line) for input it cannot honour and `UsageError` for options that do not
fit the file. Pure: no I/O, no mutation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from ruamel.yaml.comments import CommentedMap

from gossamer.compose import multinode, names
from gossamer.compose.document import ComposeDocument
from gossamer.compose.options import InjectOptions
from gossamer.compose.ports import (
    PROTOCOLS,
    guess_protocol,
    host_ports,
    published_tcp_ports,
    service_ports,
    tcp_ports,
)
from gossamer.errors import ConfigError, UsageError

Shape = Literal["netns", "host"]
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_SETTINGS = ("mesh", "port", "protocol", "service")
NETWORK_KEYS = names.NETWORK_KEYS
# InjectOptions lives in options.py; importing it from here keeps working
__all__ = ["NETWORK_KEYS", "InjectOptions", "Plan", "ServicePlan", "make_plan", "mesh_name"]


@dataclass(frozen=True)
class ServicePlan:
    """One meshed service."""

    name: str
    shape: Shape  # netns: own namespace owner; host: network_mode host, sidecar beside it
    app_port: int | None  # where the sidecar delivers inbound traffic; None = client only
    ports: tuple[tuple[int, str], ...]  # (container port, protocol) for mesh.yaml
    published: tuple[int, ...]  # container ports the host reaches directly
    networks: tuple[str, ...]  # networks its namespace is on (netns shape)
    profiles: tuple[str, ...]
    container_name: str | None = None
    mesh_name: str = ""  # its name in the mesh: a DNS-1123 label (SPIFFE ID, mesh.yaml)
    named: bool = False  # mesh_name set with x-gossamer: {service: NAME} (replicas share it)
    port_offset: int = 0  # added to the sidecar's own ports (host shape: several share one)
    version: str = ""  # service.version of its spans: label gossamer.version, else image tag


@dataclass(frozen=True)
class Plan:
    meshed: tuple[ServicePlan, ...]
    skipped: tuple[tuple[str, str], ...]  # (service, why it has no sidecar)
    networks: tuple[str, ...]  # networks the control plane and observability join
    taken_host_ports: frozenset[int]
    retarget: dict[str, str] = field(default_factory=dict)  # service -> new network_mode

    def renamed(self) -> list[ServicePlan]:
        """Meshed services whose mesh name differs from their Compose name."""
        return [sp for sp in self.meshed if sp.mesh_name != sp.name]

    def get(self, name: str) -> ServicePlan | None:
        return next((s for s in self.meshed if s.name == name), None)


@dataclass(frozen=True)
class _Settings:
    mesh: bool = True
    port: int | None = None
    protocol: str | None = None
    service: str | None = None  # the mesh service name, shared by replicas


def _settings(doc: ComposeDocument, name: str, service: CommentedMap) -> _Settings:
    raw = service.get(names.EXTENSION)
    if raw is None:
        return _Settings()
    where = f"services.{name}.{names.EXTENSION}"
    if not isinstance(raw, dict):
        raise doc.error(
            "expected a mapping such as {mesh: false}", service, names.EXTENSION, field=where
        )
    for key in raw:
        if key not in _SETTINGS:
            raise doc.error(
                f"unknown setting {key!r}",
                raw,
                key,
                field=where,
                hint=f"known settings: {', '.join(_SETTINGS)}",
            )
    mesh = raw.get("mesh", True)
    if not isinstance(mesh, bool):
        raise doc.error("expected true or false", raw, "mesh", field=f"{where}.mesh")
    port = raw.get("port")
    if port is not None and (
        isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536
    ):
        raise doc.error("expected a port number (1-65535)", raw, "port", field=f"{where}.port")
    protocol = raw.get("protocol")
    if protocol is not None and protocol not in PROTOCOLS:
        raise doc.error(
            f"expected one of {', '.join(PROTOCOLS)}", raw, "protocol", field=f"{where}.protocol"
        )
    named = raw.get("service")
    if named is not None and (not isinstance(named, str) or not _DNS_LABEL.match(named)):
        raise doc.error(
            "expected a service name: a DNS-1123 label (lowercase letters, digits and '-')",
            raw,
            "service",
            field=f"{where}.service",
        )
    return _Settings(mesh=mesh, port=port, protocol=protocol, service=named)


def _check_shapes(doc: ComposeDocument, name: str, service: CommentedMap) -> None:
    """Reject values of keys the rewrite touches that are not what Compose allows."""
    shapes = {
        "networks": (list, dict),
        "ports": (list,),
        "expose": (list,),
        "depends_on": (list, dict),
        "environment": (list, dict),
        "links": (list,),
        "sysctls": (list, dict),
        "profiles": (list,),
    }
    own = {k for k, _ in service.non_merged_items()}
    for key, types in shapes.items():
        if key not in service:
            continue
        if key not in own and key in NETWORK_KEYS:
            raise doc.error(
                f"{key!r} comes from a YAML merge (<<:) and cannot be moved to the sidecar's "
                "namespace owner",
                service,
                None,
                field=f"services.{name}",
                hint=f"write {key} in the service itself, or exclude {name} from the mesh",
            )
        if not isinstance(service[key], types):
            kinds = " or ".join("a list" if t is list else "a mapping" for t in types)
            raise doc.error(f"expected {kinds}", service, key, field=f"services.{name}.{key}")


def mesh_name(name: str) -> str:
    """A Compose service name as a DNS-1123 label: `Flask_App` -> `flask-app`."""
    label = re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", name.lower())).strip("-")
    return label[:63].rstrip("-")


def _replicas(service: CommentedMap) -> int:
    counts = [service.get("scale")]
    deploy = service.get("deploy")
    if isinstance(deploy, dict):
        counts.append(deploy.get("replicas"))
    return max((c for c in counts if isinstance(c, int) and not isinstance(c, bool)), default=1)


def _networks(service: CommentedMap) -> tuple[str, ...]:
    value = service.get("networks")
    if isinstance(value, dict):
        return tuple(str(k) for k in value)
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    return ("default",)


def _checked_mesh_name(
    doc: ComposeDocument, name: str, meshed: list[ServicePlan], named: str | None
) -> str:
    """The service's mesh name; two Compose services may share one only when it is
    given explicitly (`x-gossamer: {service: NAME}`): they are replicas of one service."""
    label = named or mesh_name(name)
    clash = next((sp for sp in meshed if sp.mesh_name == label), None)
    if not label or (clash is not None and not (named or clash.named)):
        why = f"the same as {clash.name}'s" if clash else "empty"
        raise doc.error(
            f"{name}'s name in the mesh (a DNS-1123 label) would be {why}",
            doc.services,
            name,
            field="services",
            hint=f"rename {name}, exclude it from the mesh, or if both are replicas of one "
            f"service, give both x-gossamer: {{service: {label or 'NAME'}}}",
        )
    return label


def _check_replicas(doc: ComposeDocument, meshed: list[ServicePlan]) -> None:
    """Replicas of one mesh service must declare the same ports (mesh.yaml has one entry)."""
    first: dict[str, ServicePlan] = {}
    for sp in meshed:
        other = first.setdefault(sp.mesh_name, sp)
        if other is not sp and other.ports != sp.ports:
            raise doc.error(
                f"{sp.name} and {other.name} are both the mesh service {sp.mesh_name} but "
                "declare different ports",
                doc.services,
                sp.name,
                field=f"services.{sp.name}",
                hint="give replicas the same ports (or x-gossamer: {port: N, protocol: P})",
            )


def _check_collisions(
    doc: ComposeDocument, meshed: list[ServicePlan], options: InjectOptions
) -> None:
    services = doc.services
    for sp in meshed:
        for generated in names.per_service(sp.name):
            if generated in services:
                raise doc.error(
                    f"the service name {generated!r} is needed by gossamer inject for {sp.name}",
                    services,
                    generated,
                    field="services",
                    hint=f"rename {generated}, or exclude {sp.name} from the mesh",
                )
    if meshed:
        shared = names.shared_services(options.observability, options.bootstrap)
        if options.node is not None:
            shared = (*shared, names.GATEWAY)
        for generated in shared:
            if generated in services:
                raise doc.error(
                    f"the service name {generated!r} is needed by gossamer inject",
                    services,
                    generated,
                    field="services",
                    hint=f"rename {generated}"
                    + (
                        ", or inject without --with-observability"
                        if generated in (names.JAEGER, names.PROMETHEUS)
                        else ""
                    ),
                )
    for section, taken in (
        (
            "secrets",
            [
                names.CA_SECRET,
                *(names.token_secret(s.name) for s in meshed),
                *([names.token_secret(names.GATEWAY)] if options.node is not None else []),
                *([names.PROMETHEUS_TOKEN_SECRET] if options.observability else []),
            ],
        ),
        ("configs", [names.MESH_CONFIG, names.PROMETHEUS_CONFIG]),
        (
            "volumes",
            [
                *(names.state_volume(s.name) for s in meshed),
                *(
                    [
                        names.CA_VOLUME,
                        *(names.token_volume(s.name) for s in meshed),
                        *([names.PROMETHEUS_TOKEN_VOLUME] if options.observability else []),
                    ]
                    if options.bootstrap == "volumes"
                    else []
                ),
            ],
        ),
    ):
        existing = doc.data.get(section)
        if not isinstance(existing, dict):
            continue
        for name in taken:
            if name in existing:
                raise doc.error(
                    f"the {section[:-1]} name {name!r} is needed by gossamer inject",
                    existing,
                    name,
                    field=section,
                    hint=f"rename that {section[:-1]}",
                )


def make_plan(doc: ComposeDocument, options: InjectOptions) -> Plan:
    services = doc.services
    known = list(services)
    for flag, listed in (("--only", options.only), ("--exclude", options.exclude)):
        for name in listed:
            if name not in services:
                raise UsageError(
                    f"{flag} {name}: no such service in {doc.source}",
                    hint=f"services: {', '.join(known)}",
                )
    meshed: list[ServicePlan] = []
    skipped: list[tuple[str, str]] = []
    for name in known:
        service = services[name]
        settings = _settings(doc, name, service)
        if options.only and name not in options.only:
            skipped.append((name, "not listed in --only"))
            continue
        if name in options.exclude:
            skipped.append((name, "listed in --exclude"))
            continue
        if not settings.mesh:
            if name in options.only:
                raise UsageError(f"--only {name}, but {name} has x-gossamer: {{mesh: false}}")
            skipped.append((name, "x-gossamer: {mesh: false}"))
            continue
        shape: Shape = "netns"
        mode = service.get("network_mode")
        if mode is not None:
            if str(mode) != "host":
                reason = f"network_mode: {mode} (it has no network namespace of its own to mesh)"
                if name in options.only:
                    raise UsageError(f"--only {name}: cannot mesh it, {reason}")
                skipped.append((name, reason))
                continue
            shape = "host"
        if _replicas(service) > 1:
            raise doc.error(
                f"{name} runs {_replicas(service)} replicas; a Compose sidecar can share the "
                "network namespace of one container only",
                service,
                "deploy" if "deploy" in service else "scale",
                field=f"services.{name}",
                hint=f"exclude it (--exclude {name}) or declare one service per replica",
            )
        _check_shapes(doc, name, service)
        entries = service_ports(service)
        tcp = tcp_ports(entries)
        app_port = settings.port or (tcp[0] if tcp else None)
        order = ([app_port] if app_port else []) + [p for p in tcp if p != app_port]
        declared = tuple(
            (p, settings.protocol if p == app_port and settings.protocol else guess_protocol(p))
            for p in order
        )
        profiles = service.get("profiles")
        container_name = service.get("container_name")
        meshed.append(
            ServicePlan(
                name=name,
                shape=shape,
                app_port=app_port,
                ports=declared,
                published=tuple(published_tcp_ports(entries)),
                networks=_networks(service) if shape == "netns" else (),
                profiles=tuple(str(p) for p in profiles) if isinstance(profiles, list) else (),
                container_name=str(container_name) if container_name else None,
                mesh_name=_checked_mesh_name(doc, name, meshed, settings.service),
                named=settings.service is not None,
                port_offset=100 * sum(1 for m in meshed if m.shape == "host")
                if shape == "host"
                else 0,
                version=service_version(service),
            )
        )
    _check_replicas(doc, meshed)
    _check_collisions(doc, meshed, options)
    if not meshed:
        raise ConfigError(
            "nothing to mesh: every service is excluded or cannot have a sidecar",
            source=doc.source,
            hint="; ".join(f"{n}: {why}" for n, why in skipped),
        )
    union: dict[str, None] = {}
    for sp in meshed:
        for net in sp.networks:
            union.setdefault(net, None)
    if not union:
        union["default"] = None
    taken: set[int] = set()
    for service in services.values():
        taken |= host_ports(service_ports(service))
    multinode.check_host_ports(options, taken)
    retarget: dict[str, str] = {}
    netns_names = {s.name for s in meshed if s.shape == "netns"}
    for name in known:
        mode = services[name].get("network_mode")
        if isinstance(mode, str) and mode.startswith("service:"):
            target = mode.split(":", 1)[1]
            if target in netns_names:
                retarget[name] = f"service:{names.netns(target)}"
    return Plan(
        meshed=tuple(meshed),
        skipped=tuple(skipped),
        networks=tuple(union),
        taken_host_ports=frozenset(taken),
        retarget=retarget,
    )


def service_version(service: Any) -> str:
    """A service's version for its traces (`service.version`): its `gossamer.version`
    label, else its image's tag (`shop/web:1.4.2` -> `1.4.2`; none for `latest`, a
    digest or no tag)."""
    labels = service.get("labels") if isinstance(service, dict) else None
    if isinstance(labels, dict) and labels.get("gossamer.version"):
        return str(labels["gossamer.version"])[:128]
    if isinstance(labels, list):
        for entry in labels:
            key, sep, value = str(entry).partition("=")
            if sep and key.strip() == "gossamer.version" and value.strip():
                return value.strip()[:128]
    image = service.get("image") if isinstance(service, dict) else None
    if not isinstance(image, str) or "@" in image:
        return ""
    _name, sep, tag = image.rpartition(":")
    if not sep or "/" in tag or tag == "latest":
        return ""
    return tag[:128]
