"""The control plane's view of mesh.yaml: typed, validated once, frozen.

```yaml
trust_domain: gossamer.local
control:
  xds_listen: 0.0.0.0:15012            # mTLS, for sidecars (ADS, registration, renewal)
  bootstrap_listen: 0.0.0.0:15011      # server-auth TLS: first certificate with a join token
  insecure_xds_listen: 127.0.0.1:15010 # optional plaintext port (proxyless gRPC); warns at start
  api_listen: 127.0.0.1:15014          # operator API, dashboard, /metrics, http_sd
  ca_dir: ./.gossamer/ca
  data_dir: ./.gossamer/data           # the embedded store's files
  store: embedded                      # or etcd://host:port,host:port
  lease_ttl: 10s                       # a lost sidecar's endpoint leaves after this
  max_token_ttl: 24h                   # longest join token made through the API/CLI
  max_cert_ttl: 24h                    # longest leaf a sidecar gets (longer asks are cut)
services: [...]                        # discovery fields + per-service policy (policy.py)
```

`parse_mesh` takes a `gossamer.yamlconf.Node` (so tests pass a dict through
`mesh_from_mapping`), `load_mesh` a file. Relative directories are resolved against the
file's folder. Every error names the field and, for files, the line; the keys, defaults
and bounds come from gossamer/meshconfig/schema.py. `parse_mesh` reads the whole file,
the registry's `services:` parser included, and raises every independent error at once
(`ConfigErrors`): this is what `gossamer validate` and `gossamer control` both run.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from gossamer.contract.identity import ServiceKey
from gossamer.control.policy import DEFAULT_POLICY, ServicePolicy, parse_service_policy
from gossamer.discovery.mesh_services import parse_services, service_key_of
from gossamer.discovery.stores import parse_store_url
from gossamer.errors import ConfigError
from gossamer.meshconfig import schema
from gossamer.observe.settings import ObservabilitySettings, parse_observability
from gossamer.yamlconf import (
    Node,
    attempt,
    collecting,
    load_document,
    load_file,
    parse_duration,
    report,
)

TOP_LEVEL_KEYS = schema.TOP_LEVEL_KEYS
CONTROL_KEYS = schema.CONTROL_KEYS

DEFAULT_TRUST_DOMAIN = schema.DEFAULT_TRUST_DOMAIN
_CONTROL = schema.CONTROL
_TRUST_DOMAIN = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,253}[a-z0-9])?$")


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_address(text: str) -> Address:
    """`host:port` or `[v6]:port`; raises ValueError with a readable message."""
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"expected [address]:port, got {text!r}")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f"expected host:port, got {text!r}")
        if ":" in host:
            raise ValueError(f"put an IPv6 address in brackets: [{host}]:{port_text}")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"port must be between 0 and 65535, got {port_text!r}")
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if not re.match(r"^[A-Za-z0-9.-]+$", host):
                raise ValueError(f"{host!r} is not an IP address or host name") from None
    return Address(host, int(port_text))


_DEFAULT_XDS = parse_address(_CONTROL["xds_listen"].default)
_DEFAULT_BOOTSTRAP = parse_address(_CONTROL["bootstrap_listen"].default)
_DEFAULT_API = parse_address(_CONTROL["api_listen"].default)


@dataclass(frozen=True)
class ControlConfig:
    """The `control:` section; its defaults are the schema's."""

    xds_listen: Address = _DEFAULT_XDS
    bootstrap_listen: Address = _DEFAULT_BOOTSTRAP
    insecure_xds_listen: Address | None = None
    api_listen: Address = _DEFAULT_API
    ca_dir: Path = Path(_CONTROL["ca_dir"].default)
    data_dir: Path = Path(_CONTROL["data_dir"].default)
    store: str = _CONTROL["store"].default  # or etcd://host:port[,host:port...][/prefix]
    lease_ttl: float = parse_duration(_CONTROL["lease_ttl"].default)  # endpoint outlives its stream
    max_token_ttl: float = parse_duration(_CONTROL["max_token_ttl"].default)  # longer: refused
    max_cert_ttl: float = parse_duration(_CONTROL["max_cert_ttl"].default)  # longer: cut to it


@dataclass(frozen=True)
class MeshConfig:
    """Everything the control plane takes from mesh.yaml except the registry contents."""

    trust_domain: str = DEFAULT_TRUST_DOMAIN
    control: ControlConfig = field(default_factory=ControlConfig)
    policies: Mapping[ServiceKey, ServicePolicy] = field(default_factory=dict)
    source: str | None = None
    observability: ObservabilitySettings = field(default_factory=ObservabilitySettings)

    def policy_for(self, key: ServiceKey) -> ServicePolicy:
        return self.policies.get(key, DEFAULT_POLICY)


def parse_mesh(root: Node, *, base_dir: Path | None = None) -> MeshConfig:
    """The whole file: every independent error is reported (ConfigErrors), not the first."""
    with collecting():
        mesh = _parse_mesh(root, base_dir)
    return mesh


def _parse_mesh(root: Node, base_dir: Path | None) -> MeshConfig:
    root.mapping()
    root.check_keys(TOP_LEVEL_KEYS)
    trust_domain = attempt(lambda: _trust_domain(root), DEFAULT_TRUST_DOMAIN)
    control = attempt(
        lambda: _parse_control(root.child("control", None), base_dir), ControlConfig()
    )
    # names, namespaces, ports, endpoints, unknown keys, duplicates: the registry's parser
    # (the control plane runs it on every load); this loop reads the policies.
    parse_services(root)
    policies: dict[ServiceKey, ServicePolicy] = {}
    entries: list[Node] = attempt(lambda: list(root.child("services", None).items()), [])
    for entry in entries:
        key = attempt(partial(service_key_of, entry), None)
        policy = attempt(partial(parse_service_policy, entry, trust_domain), DEFAULT_POLICY)
        if key is not None and key not in policies:
            policies[key] = policy
    observability = attempt(
        lambda: parse_observability(root.child("observability", None), base_dir=base_dir),
        ObservabilitySettings(),
    )
    return MeshConfig(trust_domain, control, policies, root.source, observability)


def _trust_domain(root: Node) -> str:
    if not root.has("trust_domain"):
        return DEFAULT_TRUST_DOMAIN
    td_node = root.child("trust_domain")
    trust_domain = td_node.string()
    if not _TRUST_DOMAIN.match(trust_domain):
        raise td_node.error(
            f"{trust_domain!r} is not a valid trust domain",
            hint="use lowercase letters, digits, '.', '-' and '_', e.g. gossamer.local",
        )
    return trust_domain


def _parse_control(node: Node, base_dir: Path | None) -> ControlConfig:
    if node.value is None:
        return ControlConfig()
    node.check_keys(CONTROL_KEYS)
    defaults = ControlConfig()

    def address(key: str) -> Address | None:
        child = _CONTROL[key].read(node)
        if child.value is None:
            return None
        try:
            return parse_address(child.string())
        except ValueError as exc:
            raise child.error(str(exc)) from None

    def directory(key: str, default: Path) -> Path:
        path = Path(node.child(key).string()) if node.has(key) else default
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
        return path

    def store() -> str:
        store_node = _CONTROL["store"].read(node)
        value = store_node.string().strip()
        try:
            parse_store_url(value)
        except ConfigError as exc:
            raise store_node.error(exc.detail, hint=exc.hint) from None
        return value

    def lease_ttl() -> float:
        lease_node = _CONTROL["lease_ttl"].read(node)
        value = lease_node.duration()
        if not 1.0 <= value <= 3600.0:
            raise lease_node.error("must be between 1s and 1h")
        return value

    def ttl_cap(key: str) -> float:
        cap_node = _CONTROL[key].read(node)
        value = cap_node.duration()
        if not _CONTROL[key].minimum <= value <= schema.MAX_TTL_CAP:  # type: ignore[operator]
            raise cap_node.error("must be between 1m and 720h (30 days)")
        return value

    listen = {
        key: attempt(partial(address, key), None)
        for key in ("xds_listen", "bootstrap_listen", "api_listen", "insecure_xds_listen")
    }
    seen: dict[tuple[str, int], str] = {}
    for key, addr in listen.items():
        if addr is None or addr.port == 0:
            continue
        clash = seen.get((addr.host, addr.port))
        if clash is not None:
            report(node.child(key).error(f"{addr} is already used by control.{clash}"))
        seen[(addr.host, addr.port)] = key
    return ControlConfig(
        xds_listen=listen["xds_listen"] or defaults.xds_listen,
        bootstrap_listen=listen["bootstrap_listen"] or defaults.bootstrap_listen,
        insecure_xds_listen=listen["insecure_xds_listen"],
        api_listen=listen["api_listen"] or defaults.api_listen,
        ca_dir=attempt(lambda: directory("ca_dir", defaults.ca_dir), defaults.ca_dir),
        data_dir=attempt(lambda: directory("data_dir", defaults.data_dir), defaults.data_dir),
        store=attempt(store, defaults.store),
        lease_ttl=attempt(lease_ttl, defaults.lease_ttl),
        max_token_ttl=attempt(partial(ttl_cap, "max_token_ttl"), defaults.max_token_ttl),
        max_cert_ttl=attempt(partial(ttl_cap, "max_cert_ttl"), defaults.max_cert_ttl),
    )


def mesh_from_mapping(data: Mapping[str, Any], *, base_dir: Path | None = None) -> MeshConfig:
    """Build a MeshConfig from a plain mapping (tests, generated configuration)."""
    return parse_mesh(Node(dict(data)), base_dir=base_dir)


def load_mesh_text(text: str, *, source: str | None = None) -> tuple[Node, MeshConfig]:
    root = load_document(text, source=source)
    base = Path(source).resolve().parent if source else None
    return root, parse_mesh(root, base_dir=base)


def load_mesh(path: str | Path) -> tuple[Node, MeshConfig]:
    """Read mesh.yaml; returns the document (for the registry's source) and the config."""
    root = load_file(path)
    return root, parse_mesh(root, base_dir=Path(path).resolve().parent)
