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
services: [...]                        # discovery fields + per-service policy (policy.py)
```

`parse_mesh` takes a `gossamer.yamlconf.Node` (so tests pass a dict through
`mesh_from_mapping`), `load_mesh` a file. Relative directories are resolved against the
file's folder. Every error names the field and, for files, the line.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gossamer.contract.identity import DEFAULT_NAMESPACE, ServiceKey, check_label
from gossamer.control.policy import DEFAULT_POLICY, POLICY_KEYS, ServicePolicy, parse_service_policy
from gossamer.discovery.stores import parse_store_url
from gossamer.errors import ConfigError
from gossamer.observe.settings import ObservabilitySettings, parse_observability
from gossamer.yamlconf import Node, load_document, load_file

TOP_LEVEL_KEYS = ("trust_domain", "control", "services", "observability")
CONTROL_KEYS = (
    "xds_listen",
    "bootstrap_listen",
    "insecure_xds_listen",
    "api_listen",
    "ca_dir",
    "data_dir",
    "store",
    "lease_ttl",
)
# The discovery fields of a service entry, parsed by the registry's mesh-file source.
SERVICE_DISCOVERY_KEYS = ("name", "namespace", "ports", "endpoints")
SERVICE_KEYS = SERVICE_DISCOVERY_KEYS + POLICY_KEYS

DEFAULT_TRUST_DOMAIN = "gossamer.local"
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


@dataclass(frozen=True)
class ControlConfig:
    xds_listen: Address = Address("0.0.0.0", 15012)
    bootstrap_listen: Address = Address("0.0.0.0", 15011)
    insecure_xds_listen: Address | None = None
    api_listen: Address = Address("127.0.0.1", 15014)
    ca_dir: Path = Path(".gossamer/ca")
    data_dir: Path = Path(".gossamer/data")
    store: str = "embedded"  # or etcd://host:port[,host:port...][/prefix]
    lease_ttl: float = 10.0  # how long a sidecar's endpoint outlives its lost stream


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
    root.mapping()
    root.check_keys(TOP_LEVEL_KEYS)
    trust_domain = DEFAULT_TRUST_DOMAIN
    if root.has("trust_domain"):
        td_node = root.child("trust_domain")
        trust_domain = td_node.string()
        if not _TRUST_DOMAIN.match(trust_domain):
            raise td_node.error(
                f"{trust_domain!r} is not a valid trust domain",
                hint="use lowercase letters, digits, '.', '-' and '_', e.g. gossamer.local",
            )
    control = _parse_control(root.child("control", None), base_dir)
    policies: dict[ServiceKey, ServicePolicy] = {}
    for entry in root.child("services", None).items():
        entry.check_keys(SERVICE_KEYS)
        key = service_key_of(entry)
        if key in policies:
            raise entry.error(f"service {key} is declared twice")
        policies[key] = parse_service_policy(entry, trust_domain)
    observability = parse_observability(root.child("observability", None))
    return MeshConfig(trust_domain, control, policies, root.source, observability)


def service_key_of(entry: Node) -> ServiceKey:
    """The (namespace, name) of a `services:` entry, validated as DNS-1123 labels."""
    name_node = entry.child("name")
    ns_node = entry.child("namespace", DEFAULT_NAMESPACE)
    try:
        name = check_label(name_node.string(), "name")
    except ConfigError as exc:
        raise name_node.error(exc.detail) from None
    try:
        namespace = check_label(ns_node.string(), "namespace")
    except ConfigError as exc:
        raise ns_node.error(exc.detail) from None
    return ServiceKey(namespace, name)


def _parse_control(node: Node, base_dir: Path | None) -> ControlConfig:
    if node.value is None:
        return ControlConfig()
    node.check_keys(CONTROL_KEYS)
    defaults = ControlConfig()

    def address(key: str, default: Address | None) -> Address | None:
        if not node.has(key) or node.child(key).value is None:
            return default
        child = node.child(key)
        try:
            return parse_address(child.string())
        except ValueError as exc:
            raise child.error(str(exc)) from None

    def directory(key: str, default: Path) -> Path:
        path = Path(node.child(key).string()) if node.has(key) else default
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
        return path

    xds = address("xds_listen", defaults.xds_listen)
    bootstrap = address("bootstrap_listen", defaults.bootstrap_listen)
    api = address("api_listen", defaults.api_listen)
    insecure = address("insecure_xds_listen", None)
    assert xds is not None and api is not None and bootstrap is not None
    store = defaults.store
    if node.has("store"):
        store_node = node.child("store")
        store = store_node.string().strip()
        try:
            parse_store_url(store)
        except ConfigError as exc:
            raise store_node.error(exc.detail, hint=exc.hint) from None
    lease_ttl = defaults.lease_ttl
    if node.has("lease_ttl"):
        lease_node = node.child("lease_ttl")
        lease_ttl = lease_node.duration()
        if not 1.0 <= lease_ttl <= 3600.0:
            raise lease_node.error("must be between 1s and 1h")
    named = (("xds_listen", xds), ("bootstrap_listen", bootstrap), ("api_listen", api))
    ports = [(k, a) for k, a in named if a.port != 0]
    if insecure is not None and insecure.port != 0:
        ports.append(("insecure_xds_listen", insecure))
    seen: dict[tuple[str, int], str] = {}
    for key, addr in ports:
        clash = seen.get((addr.host, addr.port))
        if clash is not None:
            raise node.child(key).error(f"{addr} is already used by control.{clash}")
        seen[(addr.host, addr.port)] = key
    return ControlConfig(
        xds_listen=xds,
        bootstrap_listen=bootstrap,
        insecure_xds_listen=insecure,
        api_listen=api,
        ca_dir=directory("ca_dir", defaults.ca_dir),
        data_dir=directory("data_dir", defaults.data_dir),
        store=store,
        lease_ttl=lease_ttl,
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
