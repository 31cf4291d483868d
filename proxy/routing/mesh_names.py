"""Mesh service names for the sidecar's DNS: which names it answers, with which virtual
address, and which cluster a connection to that address and a service port goes to.

Transparent mode lets the app dial a service by the name its local DNS knows (Compose
DNS, /etc/hosts). A service that runs only on other nodes has no such name on this host;
the sidecar answers for it instead (`proxy/listeners/dns.py`), as Istio's DNS proxying
does, with a virtual IP (VIP) that stands for the service, and maps a connection to
VIP:port to the service's outbound cluster (`destinations`, merged into the snapshot's
original destinations: `proxy/sidecar.py`).

Theory of operation (pure; `VipAllocator` is the only state, kept for the sidecar's
life):
- Services are the outbound clusters' (`outbound|<port>||<svc>.<ns>`), grouped by
  (service, namespace).
- Local or not: a service is local when one of its endpoints is an instance with a
  sidecar (`tls`) on this node (`Endpoint.node` equal to the sidecar's `--node`, or
  empty: an instance that did not say, taken as this host's, as before multi-node).
  Names of local services, of services with no endpoint at all (not running yet, or
  declared in mesh.yaml for a server the mesh does not reach: its local name, if
  any, keeps working as before), and every name that is not a mesh name are
  forwarded to the original resolver, whose answers stay as they were. A service
  whose endpoints are all elsewhere (other nodes' gateways, static endpoints) is
  answered with its VIP.
- Names (lower case, no trailing dot): `S.NS.svc.<trust-domain>`, `S.NS.svc`, `S.NS`,
  and `S` alone for a service of the sidecar's own namespace, or of one namespace only
  when the own namespace has no service S (Kubernetes' search-path meaning).
- VIPs come from 240.240.0.0/16 (Istio's range for auto-allocated addresses; class E,
  never a real host): the first 8 octets of SHA-256("S.NS") modulo the 65,534 usable
  addresses, then the next free one on a collision (linear probing), allocated in
  sorted order of "S.NS" so a sidecar started with the same services picks the same
  addresses. Once given, a VIP stays with its service for the allocator's life (an
  app may have cached it), even when the service goes away and comes back; when all
  65,534 are taken a new service gets none (its names are forwarded).
- Every service gets a VIP and destinations (VIP, port) for each of its ports, local
  or not, so a cached answer keeps working when a service moves onto this node.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gossamer.proxy.config import Cluster, Endpoint

VIP_NETWORK = ipaddress.IPv4Network("240.240.0.0/16")
OUTBOUND_PREFIX = "outbound|"


class VipAllocator:
    """Stable virtual addresses for services ("S.NS" keys), collision-free."""

    def __init__(self, network: ipaddress.IPv4Network = VIP_NETWORK) -> None:
        self._base = int(network.network_address)
        self._size = network.num_addresses - 2  # no network or broadcast address
        self._by_key: dict[str, str] = {}
        self._taken: set[int] = set()

    def __len__(self) -> int:
        return len(self._by_key)

    def get(self, key: str) -> str | None:
        return self._by_key.get(key)

    def allocate(self, key: str) -> str | None:
        """The VIP of `key`, given now if it has none; None when none is left."""
        found = self._by_key.get(key)
        if found is not None:
            return found
        if len(self._taken) >= self._size:
            return None
        digest = hashlib.sha256(key.encode()).digest()
        slot = int.from_bytes(digest[:8], "big") % self._size
        while slot in self._taken:
            slot = (slot + 1) % self._size
        self._taken.add(slot)
        address = str(ipaddress.IPv4Address(self._base + 1 + slot))
        self._by_key[key] = address
        return address


@dataclass(frozen=True, slots=True)
class MeshNames:
    """One configuration's names: `answers` the DNS answers itself (name -> VIP),
    `local` the mesh names left to the original resolver, `destinations` (VIP, port)
    -> cluster name for every service."""

    answers: Mapping[str, str]
    local: frozenset[str]
    destinations: Mapping[tuple[str, int], str]

    def lookup(self, name: str) -> str | None:
        return self.answers.get(name.lower().rstrip("."))


EMPTY = MeshNames({}, frozenset(), {})


def service_names(service: str, namespace: str, trust_domain: str) -> list[str]:
    """The qualified names of a service (the short one is decided per table)."""
    base = f"{service}.{namespace}".lower()
    return [f"{base}.svc.{trust_domain.lower()}", f"{base}.svc", base]


def is_local(endpoints: Sequence[Endpoint], own_node: str) -> bool:
    return any(ep.tls and ep.node in (own_node, "") for ep in endpoints)


def build(
    clusters: Mapping[str, Cluster],
    endpoints: Mapping[str, Sequence[Endpoint]],
    *,
    own_node: str,
    own_namespace: str,
    trust_domain: str,
    allocator: VipAllocator,
) -> MeshNames:
    """The names and VIP destinations of a configuration's outbound services."""
    services: dict[tuple[str, str], list[Cluster]] = {}
    for name, cluster in clusters.items():
        if name.startswith(OUTBOUND_PREFIX):
            services.setdefault((cluster.service, cluster.namespace), []).append(cluster)
    namespaces_of: dict[str, set[str]] = {}
    for svc, ns in services:
        namespaces_of.setdefault(svc, set()).add(ns)
    answers: dict[str, str] = {}
    local: set[str] = set()
    destinations: dict[tuple[str, int], str] = {}
    for (svc, ns), members in sorted(services.items()):
        vip = allocator.allocate(f"{svc}.{ns}")
        if vip is None:
            continue
        for cluster in members:
            destinations[(vip, cluster.port)] = cluster.name
        names = service_names(svc, ns, trust_domain)
        others = namespaces_of[svc]
        if ns == own_namespace or (len(others) == 1 and own_namespace not in others):
            names.append(svc.lower())
        found = [ep for c in members for ep in endpoints.get(c.name, ())]
        for dns_name in names:
            if not found or is_local(found, own_node):
                local.add(dns_name)
            else:
                answers[dns_name] = vip
    return MeshNames(answers, frozenset(local), destinations)
