"""Choose and open a registry store from a URL.

- `embedded` (the default): the in-process store, persisted to `<data_dir>/registry.json`.
- `etcd://host:port[,host:port...][/prefix]`: the etcd store on those members, keys
  under `prefix` (default `/gossamer`). IPv6 members are written `[::1]:2379`.

`parse_store_url` only parses (no I/O), so configuration is checked before anything
starts; `open_store` returns a store that still needs `await store.start()`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gossamer.discovery.etcd_keys import DEFAULT_PREFIX, check_prefix
from gossamer.discovery.store import Store
from gossamer.errors import ConfigError

EMBEDDED = "embedded"
REGISTRY_FILE = "registry.json"
_HOSTPORT = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9.-]+)):(?P<port>\d+)$")
_HINT = "use 'embedded' or etcd://HOST:PORT[,HOST:PORT...][/prefix]"


@dataclass(frozen=True)
class StoreSpec:
    """A parsed store URL."""

    kind: str  # "embedded" or "etcd"
    endpoints: tuple[tuple[str, int], ...] = ()
    prefix: str = DEFAULT_PREFIX

    def describe(self) -> str:
        if self.kind == EMBEDDED:
            return EMBEDDED
        members = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.endpoints)
        return f"etcd://{members}{self.prefix}"


def parse_store_url(url: str) -> StoreSpec:
    """Parse `embedded` or `etcd://...`; anything else is a ConfigError."""
    text = url.strip()
    if text == EMBEDDED:
        return StoreSpec(EMBEDDED)
    scheme, sep, rest = text.partition("://")
    if not sep or scheme != "etcd":
        raise ConfigError(f"unknown registry store {url!r}", field="store", hint=_HINT)
    members, slash, path = rest.partition("/")
    if not members:
        raise ConfigError(f"no etcd members in {url!r}", field="store", hint=_HINT)
    endpoints: list[tuple[str, int]] = []
    for item in members.split(","):
        m = _HOSTPORT.match(item.strip())
        if m is None:
            raise ConfigError(f"{item!r} in {url!r} is not HOST:PORT", field="store", hint=_HINT)
        port = int(m.group("port"))
        if not 1 <= port <= 65535:
            raise ConfigError(f"port {port} in {url!r} is out of range", field="store", hint=_HINT)
        endpoints.append((m.group("v6") or m.group("host"), port))
    prefix = DEFAULT_PREFIX
    if slash:
        prefix = "/" + path.rstrip("/")
        try:
            check_prefix(prefix)
        except ConfigError as exc:
            raise ConfigError(exc.detail, field="store", hint=_HINT) from None
    return StoreSpec("etcd", tuple(endpoints), prefix)


def open_store(url: str, *, data_dir: Path, **options: Any) -> Store:
    """The store named by `url` (not started yet). `options` go to the store class:
    e.g. `retry_timeout` for etcd, `max_log_events` or `read_only` for embedded."""
    spec = parse_store_url(url)
    if spec.kind == EMBEDDED:
        from gossamer.discovery.embedded import EmbeddedStore

        return EmbeddedStore(Path(data_dir) / REGISTRY_FILE, **options)
    from gossamer.discovery.etcd import EtcdStore

    endpoints = _resolve(spec.endpoints)
    return EtcdStore(endpoints, prefix=spec.prefix, **options)


def _resolve(endpoints: tuple[tuple[str, int], ...]) -> list[tuple[str, int]]:
    """Host names become addresses (one gRPC target can only list addresses)."""
    import ipaddress
    import socket

    resolved: list[tuple[str, int]] = []
    for host, port in endpoints:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            try:
                infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError as exc:
                raise ConfigError(
                    f"cannot resolve etcd host {host!r}: {exc}", field="store"
                ) from None
            addresses = {info[4][0] for info in infos if info[0] == socket.AF_INET}
            addresses = addresses or {str(info[4][0]) for info in infos}
            resolved.extend((str(a), port) for a in sorted(addresses))
            continue
        resolved.append((host, port))
    return resolved
