"""What a compose service listens on: its `ports` and `expose` entries, parsed.

Compose's short port syntax is `[[HOST_IP:]HOST[-RANGE]:]CONTAINER[-RANGE][/PROTOCOL]`
(an IPv6 host address in brackets), the long syntax a mapping with `target`,
`published`, `host_ip` and `protocol`; `expose` lists container ports or ranges.
Entries holding `${VARIABLE}` cannot be known before Compose interpolates them and
are skipped. The sidecar's application port is the first TCP container port, or
`x-gossamer: {port: N}`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# Ports whose traffic is commonly *not* HTTP; anything else is declared `http` in
# mesh.yaml unless the service says `x-gossamer: {protocol: ...}`.
_NOT_HTTP = frozenset(
    {
        21,
        22,
        25,
        53,
        110,
        143,
        389,
        443,
        445,
        465,
        587,
        636,
        993,
        995,
        1433,
        1521,
        1883,
        2181,
        2375,
        2376,
        3306,
        4222,
        5432,
        5672,
        6379,
        6380,
        7000,
        7001,
        8883,
        9042,
        9092,
        9200,
        9300,
        11211,
        25565,
        26257,
        27017,
        27018,
        27019,
        28015,
        33060,
    }
)
PROTOCOLS = ("http", "http2", "grpc", "tcp")
_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


@dataclass(frozen=True)
class PortEntry:
    """One `ports` or `expose` entry."""

    container: tuple[int, ...]  # container port(s); a range gives several
    protocol: str = "tcp"  # tcp | udp | sctp
    published: bool = False  # reachable from the host (a `ports` entry)
    host: tuple[int, ...] = ()  # fixed host port(s), when the entry names them
    host_ip: str | None = None


def _port_range(text: str) -> tuple[int, ...] | None:
    match = _RANGE.match(text.strip())
    if match is None:
        return None
    first = int(match.group(1))
    last = int(match.group(2)) if match.group(2) else first
    if not (0 < first <= last <= 65535):
        return None
    return tuple(range(first, last + 1))


def _split_protocol(text: str) -> tuple[str, str]:
    if "/" in text:
        body, proto = text.rsplit("/", 1)
        return body, proto.strip().lower() or "tcp"
    return text, "tcp"


def parse_port(value: Any) -> PortEntry | None:
    """One `ports` entry (short or long syntax); None if it cannot be known statically."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        container = _port_range(str(value))
        return PortEntry(container=container, published=True) if container else None
    if isinstance(value, dict):
        target = value.get("target")
        container = _port_range(str(target)) if target is not None else None
        if not container:
            return None
        published = value.get("published")
        fixed = _port_range(str(published)) if published is not None else None
        return PortEntry(
            container=container,
            protocol=str(value.get("protocol") or "tcp").lower(),
            published=True,
            host=fixed or (),
            host_ip=None if value.get("host_ip") is None else str(value.get("host_ip")),
        )
    if not isinstance(value, str) or "$" in value:
        return None
    body, protocol = _split_protocol(value)
    host_ip: str | None = None
    host: tuple[int, ...] | None = ()
    if ":" in body:
        rest, container_text = body.rsplit(":", 1)
        if ":" in rest and not rest.endswith("]"):
            host_ip, host_text = rest.rsplit(":", 1)
        else:
            host_text = rest
        host = _port_range(host_text) if host_text else ()
    else:
        container_text = body
    container = _port_range(container_text)
    if not container or host is None:
        return None
    return PortEntry(
        container=container, protocol=protocol, published=True, host=host, host_ip=host_ip
    )


def parse_expose(value: Any) -> PortEntry | None:
    """One `expose` entry: a container port or range, maybe with `/protocol`."""
    if isinstance(value, bool):
        return None
    text = str(value)
    if "$" in text:
        return None
    body, protocol = _split_protocol(text)
    container = _port_range(body)
    if not container:
        return None
    return PortEntry(container=container, protocol=protocol)


def service_ports(service: dict[str, Any]) -> list[PortEntry]:
    """Every knowable `ports` then `expose` entry of a service, in file order."""
    entries: list[PortEntry] = []
    for value in _as_list(service.get("ports")):
        entry = parse_port(value)
        if entry is not None:
            entries.append(entry)
    for value in _as_list(service.get("expose")):
        entry = parse_expose(value)
        if entry is not None:
            entries.append(entry)
    return entries


def _as_list(value: Any) -> Iterable[Any]:
    return value if isinstance(value, list) else ()


def tcp_ports(entries: Iterable[PortEntry]) -> list[int]:
    """Distinct TCP container ports, in order of appearance."""
    seen: dict[int, None] = {}
    for entry in entries:
        if entry.protocol == "tcp":
            for port in entry.container:
                seen.setdefault(port, None)
    return list(seen)


def published_tcp_ports(entries: Iterable[PortEntry]) -> list[int]:
    """Container TCP ports the host can reach (they bypass inbound interception)."""
    seen: dict[int, None] = {}
    for entry in entries:
        if entry.published and entry.protocol == "tcp":
            for port in entry.container:
                seen.setdefault(port, None)
    return list(seen)


def host_ports(entries: Iterable[PortEntry]) -> set[int]:
    """Fixed host ports taken by these entries (to avoid publishing ours on them)."""
    return {port for entry in entries for port in entry.host}


def guess_protocol(port: int) -> str:
    """`tcp` for ports that usually carry databases, brokers, TLS...; `http` otherwise."""
    return "tcp" if port in _NOT_HTTP else "http"
