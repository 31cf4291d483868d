"""Read a Docker Compose file: its services and the container ports they expose.

Ports come from `ports:` (short syntax `[HOST_IP:][HOST:]CONTAINER[-END][/PROTO]`, or
long syntax `{target, published, host_ip, protocol, app_protocol, name}`) and from
`expose:`; ranges are expanded. Each TCP port gets a mesh protocol: `x-gossamer:
{ports: {8080: grpc}}` on the service, else a long-syntax `app_protocol` the mesh
knows, else `x-gossamer: {protocol: ...}`, else `http`. UDP (and SCTP) ports cannot be
meshed and are listed apart. `${VAR}`, `${VAR:-default}` and `$VAR` in ports are substituted from
`environ` (as Compose does from the shell); a container port that stays unresolved is
an error. `x-gossamer: {mesh: false}` and `{port: N}` (read by `gossamer inject` too) are
reported as `meshed` and `app_port`. Errors carry the file, field path and line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gossamer.discovery.model import PROTOCOLS, ServicePort
from gossamer.yamlconf import Node, load_document, load_file

MAX_RANGE = 1000
# the per-service keys `gossamer inject` also reads (gossamer/compose/plan.py), plus ports
X_GOSSAMER_KEYS = ("mesh", "port", "protocol", "ports")
_VAR = re.compile(r"\$(?:\{(?P<braced>[^}]*)\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*)|(?P<dollar>\$))")
_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")
_NOT_COMPOSE = "not a compose file: expected a mapping with a top-level 'services' mapping"


@dataclass(frozen=True)
class ExposedPort:
    port: int  # the container port
    protocol: str  # mesh protocol: http, http2, grpc or tcp
    published: str | None = None  # the host side as written ("8080", "127.0.0.1:80")
    line: int | None = None


@dataclass(frozen=True)
class ComposeService:
    name: str
    ports: tuple[ExposedPort, ...] = ()
    other_ports: tuple[str, ...] = ()  # not TCP, so not meshed: "51820/udp"
    line: int | None = None
    meshed: bool = True  # false with `x-gossamer: {mesh: false}`
    app_port: int | None = None  # `x-gossamer: {port: N}`: where the sidecar delivers

    def service_ports(self) -> tuple[ServicePort, ...]:
        return tuple(ServicePort(p.port, p.protocol) for p in self.ports)


@dataclass(frozen=True)
class ComposeFile:
    services: tuple[ComposeService, ...]
    source: str | None = None

    def service(self, name: str) -> ComposeService | None:
        return next((s for s in self.services if s.name == name), None)


def mesh_service_name(compose_name: str) -> str:
    """A compose service name as a DNS-1123 label (`Web_App.1` -> `web-app-1`)."""
    return re.sub(r"[^a-z0-9-]", "-", compose_name.lower()).strip("-")[:63].strip("-")


def interpolate(text: str, environ: Mapping[str, str], *, strict: bool = True) -> str:
    """Substitute `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `$VAR`; `$$` is `$`.

    An unset variable without a default raises KeyError, or stays as written when
    `strict` is false (so the caller can tell which part of a value needed it)."""

    def sub(m: re.Match[str]) -> str:
        if m.group("dollar"):
            return "$$" if not strict else "$"
        expr = m.group("braced") if m.group("braced") is not None else m.group("plain")
        for op in (":-", "-"):
            name, sep, default = expr.partition(op)
            if sep:
                value = environ.get(name)
                if value is None or (op == ":-" and value == ""):
                    return default
                return value
        name = expr.partition(":?")[0].partition("?")[0]
        if name in environ:
            return environ[name]
        if strict:
            raise KeyError(name)
        return m.group(0)

    return _VAR.sub(sub, text)


def _scalar(node: Node, environ: Mapping[str, str], *, strict: bool = True) -> str:
    if isinstance(node.value, bool) or not isinstance(node.value, str | int):
        raise node.error(f"expected a port number or string, got {node.value!r}")
    try:
        return interpolate(str(node.value), environ, strict=strict)
    except KeyError as exc:
        raise _unset(node, str(exc.args[0])) from None


def _unset(node: Node, name: str) -> Exception:
    return node.error(
        f"uses ${{{name}}}, which is not set",
        hint="set the variable in the environment, or give a default: ${VAR:-8080}",
    )


def _range(node: Node, text: str) -> list[int]:
    m = _RANGE.match(text.strip())
    if m is None:
        raise node.error(f"{text!r} is not a port or a port range")
    start = int(m.group(1))
    end = int(m.group(2) or start)
    if not (1 <= start <= 65535 and 1 <= end <= 65535) or end < start:
        raise node.error(f"port range {text!r} is outside 1-65535 or reversed")
    if end - start >= MAX_RANGE:
        raise node.error(f"port range {text!r} is longer than {MAX_RANGE} ports")
    return list(range(start, end + 1))


def _split_short(node: Node, text: str) -> tuple[str | None, str, str]:
    """`[published:]container[/proto]` -> (published, container, transport)."""
    body, _, transport = text.partition("/")
    transport = transport or "tcp"
    if transport not in ("tcp", "udp", "sctp"):
        raise node.error(f"unknown transport {transport!r} (tcp or udp)")
    published, colon, container = body.rpartition(":")
    return (published if colon else None), container, transport


class _Reader:
    def __init__(self, service: Node, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.default_protocol = "http"
        self.overrides: dict[int, str] = {}
        self.tcp: dict[int, ExposedPort] = {}
        self.other: list[str] = []
        self.meshed = True
        self.app_port: int | None = None
        x = service.child("x-gossamer", None)
        if x.value is not None:
            x.check_keys(X_GOSSAMER_KEYS)
            self.meshed = x.child("mesh", True).boolean()
            if x.has("port"):
                self.app_port = x.child("port").integer(minimum=1, maximum=65535)
            if x.has("protocol"):
                self.default_protocol = x.child("protocol").choice(PROTOCOLS)
            for key, value in x.child("ports", None).entries():
                try:
                    port = int(key)
                except ValueError:
                    raise value.error(f"{key!r} is not a port number") from None
                self.overrides[port] = value.choice(PROTOCOLS)

    def add(
        self, node: Node, ports: list[int], transport: str, published: str | None, app: str | None
    ) -> None:
        for port in ports:
            if transport != "tcp":
                if f"{port}/{transport}" not in self.other:
                    self.other.append(f"{port}/{transport}")
                continue
            if port in self.tcp:
                continue
            protocol = self.overrides.get(port) or (app if app in PROTOCOLS else None)
            self.tcp[port] = ExposedPort(
                port, protocol or self.default_protocol, published, node.line
            )

    def short(self, node: Node) -> None:
        text = _scalar(node, self.environ, strict=False)
        published, container, transport = _split_short(node, text)
        unset = _VAR.search(container)
        if unset is not None:  # the host side may stay unresolved, not the container port
            raise _unset(node, unset.group("braced") or unset.group("plain") or "$")
        self.add(node, _range(node, container), transport, published or None, None)

    def long(self, node: Node) -> None:
        target = node.child("target")
        text = _scalar(target, self.environ)
        transport = node.child("protocol", "tcp").choice(("tcp", "udp", "sctp"))
        published = node.child("published", None)
        pub = None if published.value is None else _scalar(published, self.environ)
        host_ip = node.child("host_ip", None).optional_string()
        if pub and host_ip:
            pub = f"{host_ip}:{pub}"
        app = node.child("app_protocol", None).optional_string()
        self.add(target, _range(target, text), transport, pub, app)


def _service(name: str, node: Node, environ: Mapping[str, str]) -> ComposeService:
    if node.value is None:
        node = Node({}, node.path, node.line, node.source)
    node.mapping()
    reader = _Reader(node, environ)
    for item in node.child("ports", None).items():
        if isinstance(item.value, dict):
            reader.long(item)
        else:
            reader.short(item)
    for item in node.child("expose", None).items():
        text = _scalar(item, environ)
        body, _, transport = text.partition("/")
        reader.add(item, _range(item, body), transport or "tcp", None, None)
    return ComposeService(
        name,
        tuple(reader.tcp.values()),
        tuple(reader.other),
        node.line,
        reader.meshed,
        reader.app_port,
    )


def parse_compose(doc: Node, *, environ: Mapping[str, str] | None = None) -> ComposeFile:
    """The services of a loaded compose document."""
    env = environ or {}
    if not isinstance(doc.value, dict) or not doc.has("services"):
        raise doc.error(_NOT_COMPOSE)
    services = doc.child("services")
    if not isinstance(services.value, dict):
        raise services.error(_NOT_COMPOSE)
    return ComposeFile(
        tuple(_service(name, node, env) for name, node in services.entries()), doc.source
    )


def parse_compose_text(
    text: str, *, source: str | None = None, environ: Mapping[str, str] | None = None
) -> ComposeFile:
    return parse_compose(load_document(text, source=source), environ=environ)


def load_compose(path: str | Path, *, environ: Mapping[str, str] | None = None) -> ComposeFile:
    """Read a compose file; syntax errors and non-compose input are ConfigErrors."""
    return parse_compose(load_file(path), environ=environ)
