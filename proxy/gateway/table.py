"""The gateway's routing table: SNI -> this node's instances, source address -> peer node.

Built (pure, no I/O) from the configuration the control plane sends a gateway
(control/translate/views.py, the `gateway:<node>` view): every service's clusters and
every instance with its node (EDS locality `sub_zone`), and the registered gateways.

- `route(server_name)`: the SNI must be the mesh form `outbound_.<port>_._.<svc>.<ns>
  .svc.<trust-domain>` (`gossamer.contract.xds.sni`) of a cluster the gateway knows;
  the connection goes to one of that cluster's healthy mTLS instances on this node,
  round robin (weights repeat an instance). Otherwise a `Miss` says why:
  `unknown_sni` (not the mesh form, another trust domain, no such service port) or
  `no_endpoint` (no healthy instance of it on this node).
- `peer_node(address)`: the node whose instances or gateway registered `address`
  ("unknown" for any other address): the metrics' `peer_node` label.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gossamer.contract import xds
from gossamer.contract.identity import ServiceKey, gateway_key
from gossamer.contract.vocabulary import Health
from gossamer.proxy.config import Endpoint, ProxyConfig

UNKNOWN_NODE = "unknown"


@dataclass(frozen=True)
class Target:
    """Where one connection goes: an instance's sidecar inbound port, for `service`."""

    service: str  # "<svc>.<ns>", the metrics' `service` label
    port: int  # the service port the SNI names
    address: str
    endpoint_port: int


@dataclass(frozen=True)
class Miss:
    reason: str  # unknown_sni | no_endpoint
    detail: str


@dataclass
class RouteTable:
    """What `route` and `peer_node` consult; replaced whole on each configuration."""

    node: str
    trust_domain: str
    local: Mapping[str, tuple[Endpoint, ...]] = field(default_factory=dict)  # cluster ->
    services: Mapping[str, tuple[str, int]] = field(default_factory=dict)  # cluster -> (svc, port)
    peers: Mapping[str, str] = field(default_factory=dict)  # address -> node
    _turns: dict[str, int] = field(default_factory=dict)

    @classmethod
    def build(cls, config: ProxyConfig, node: str) -> RouteTable:
        local: dict[str, tuple[Endpoint, ...]] = {}
        services: dict[str, tuple[str, int]] = {}
        peers: dict[str, str] = {}
        gateways = str(gateway_key())
        for name, cluster in config.clusters.items():
            if not cluster.tls or cluster.port == 0:
                continue
            members = config.endpoints.get(name, ())
            for ep in members:
                if ep.node:
                    for address in (ep.address, *ep.aliases):
                        peers.setdefault(normalise(address), ep.node)
            service = f"{cluster.service}.{cluster.namespace}"
            if service == gateways:
                continue
            services[name] = (service, cluster.port)
            chosen = [ep for ep in members if ep.node == node and ep.tls]
            healthy = [ep for ep in chosen if ep.health is Health.HEALTHY]
            local[name] = tuple(e for e in healthy for _ in range(e.weight))
        return cls(node, config.node.trust_domain, local, services, peers)

    def route(self, server_name: str | None) -> Target | Miss:
        if not server_name:
            return Miss("unknown_sni", "the ClientHello names no server")
        parsed = xds.parse_sni(server_name, self.trust_domain)
        if parsed is None:
            return Miss("unknown_sni", f"{server_name!r} is not a mesh service name")
        key, port = parsed
        cluster = xds.outbound_cluster(key, port)
        if cluster not in self.services:
            return Miss("unknown_sni", f"no service port {key}:{port} in the mesh")
        members = self.local.get(cluster, ())
        if not members:
            return Miss("no_endpoint", f"no healthy instance of {key}:{port} on {self.node}")
        turn = self._turns.get(cluster, 0)
        self._turns[cluster] = turn + 1
        chosen = members[turn % len(members)]
        return Target(self.services[cluster][0], port, chosen.address, chosen.port)

    def peer_node(self, address: str) -> str:
        return self.peers.get(normalise(address), UNKNOWN_NODE)

    def summary(self) -> dict[str, Any]:
        """For the admin port's `/routes`: each service port and its local instances."""
        return {
            "node": self.node,
            "routes": {
                xds.sni(self.trust_domain, _key(svc), port): [
                    f"{e.address}:{e.port}" for e in dict.fromkeys(self.local.get(name, ()))
                ]
                for name, (svc, port) in sorted(self.services.items())
            },
            "peers": dict(sorted(self.peers.items())),
        }


def _key(service: str) -> ServiceKey:
    name, _, namespace = service.partition(".")
    return ServiceKey(namespace, name)


def normalise(address: str) -> str:
    """An address as a peer is matched: IPv4-mapped IPv6 as IPv4."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)
