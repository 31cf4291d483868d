"""How the registry is laid out in etcd's key space, and how keys decode into events.

Pure functions, no I/O. Under a configurable prefix (default `/gossamer`):

    <prefix>/services/<namespace>/<name>                  -> Service.to_dict() as JSON
    <prefix>/endpoints/<namespace>/<name>/<instance id>   -> Endpoint.to_dict() as JSON

Namespaces and names are DNS-1123 labels, so they never contain '/'; an instance id
may, and is everything after the third segment. Lease-owned endpoints are attached to
their etcd lease, so etcd itself deletes them when the lease ends.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gossamer.contract.identity import ServiceKey
from gossamer.discovery.model import Endpoint, Event, EventKind, RegistryState, Service
from gossamer.errors import ConfigError

DEFAULT_PREFIX = "/gossamer"
_PREFIX = re.compile(r"^(/[A-Za-z0-9._-]+)+$")


def check_prefix(prefix: str) -> str:
    """A key prefix such as `/gossamer` or `/prod/mesh` (no trailing slash)."""
    if not _PREFIX.match(prefix):
        raise ConfigError(
            f"etcd key prefix must look like /name or /a/b (letters, digits, '.', '_', "
            f"'-'), got {prefix!r}",
            field="prefix",
        )
    return prefix


@dataclass(frozen=True)
class KeyLayout:
    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        check_prefix(self.prefix)

    @property
    def root(self) -> bytes:
        """Everything the registry owns (what a watch covers)."""
        return f"{self.prefix}/".encode()

    def service(self, key: ServiceKey) -> bytes:
        return f"{self.prefix}/services/{key.namespace}/{key.name}".encode()

    def endpoints_of(self, key: ServiceKey) -> bytes:
        return f"{self.prefix}/endpoints/{key.namespace}/{key.name}/".encode()

    def endpoint(self, key: ServiceKey, instance_id: str) -> bytes:
        return self.endpoints_of(key) + instance_id.encode()

    def parse(self, raw: bytes) -> tuple[str, ServiceKey, str | None] | None:
        """("service", key, None) or ("endpoint", key, instance id); None if not ours."""
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            return None
        root = f"{self.prefix}/"
        if not text.startswith(root):
            return None
        parts = text[len(root) :].split("/", 3)
        if parts[0] == "services" and len(parts) == 3:
            return "service", ServiceKey(parts[1], parts[2]), None
        if parts[0] == "endpoints" and len(parts) == 4 and parts[3]:
            return "endpoint", ServiceKey(parts[1], parts[2]), parts[3]
        return None


def encode_service(service: Service) -> bytes:
    return json.dumps(service.to_dict(), separators=(",", ":"), sort_keys=True).encode()


def encode_endpoint(endpoint: Endpoint) -> bytes:
    return json.dumps(endpoint.to_dict(), separators=(",", ":"), sort_keys=True).encode()


def decode_service(value: bytes) -> Service:
    return Service.from_dict(_json(value))


def decode_endpoint(value: bytes) -> Endpoint:
    return Endpoint.from_dict(_json(value))


def _json(value: bytes) -> dict[str, Any]:
    doc = json.loads(value)
    if not isinstance(doc, dict):
        raise ValueError("expected a JSON object")
    return doc


class BadValue(ValueError):
    """A key under our prefix holds something that is not a registry record."""


def decode_event(
    layout: KeyLayout, is_put: bool, key: bytes, value: bytes, revision: int
) -> Event | None:
    """The registry event for one etcd watch event (None for keys that are not ours)."""
    parsed = layout.parse(key)
    if parsed is None:
        return None
    kind, skey, instance_id = parsed
    try:
        if kind == "service":
            if is_put:
                return Event(
                    EventKind.PUT_SERVICE, revision, service=decode_service(value), key=skey
                )
            return Event(EventKind.DELETE_SERVICE, revision, key=skey)
        if is_put:
            endpoint = decode_endpoint(value)
            return Event(
                EventKind.PUT_ENDPOINT,
                revision,
                endpoint=endpoint,
                key=skey,
                instance_id=instance_id,
            )
        return Event(EventKind.DELETE_ENDPOINT, revision, key=skey, instance_id=instance_id)
    except (ValueError, KeyError, TypeError, ConfigError) as exc:
        raise BadValue(f"{key.decode(errors='replace')}: {exc}") from None


def decode_state(
    layout: KeyLayout, revision: int, kvs: Iterable[tuple[bytes, bytes]]
) -> tuple[RegistryState, list[str]]:
    """The registry state from a range read of `layout.root`; also the keys skipped."""
    services: dict[ServiceKey, Service] = {}
    endpoints: dict[tuple[ServiceKey, str], Endpoint] = {}
    skipped: list[str] = []
    for key, value in kvs:
        parsed = layout.parse(key)
        if parsed is None:
            skipped.append(key.decode(errors="replace"))
            continue
        kind, skey, instance_id = parsed
        try:
            if kind == "service":
                services[skey] = decode_service(value)
            else:
                assert instance_id is not None
                endpoints[(skey, instance_id)] = decode_endpoint(value)
        except (ValueError, KeyError, TypeError, ConfigError):
            skipped.append(key.decode(errors="replace"))
    return RegistryState(revision, services, endpoints), skipped
