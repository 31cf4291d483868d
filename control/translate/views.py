"""Per-node views: which resources a connected node receives.

A node belongs to a `NodeGroup` (a kind of client and its locality zone); every node of
a group gets the same snapshot. Resources are encoded once per kind of client (sidecar
or proxyless) and, for endpoints, once per locality, and shared between groups.

- `sidecar:<ns>/<svc>` (a sidecar of service S): the clusters, endpoints and routes of
  every service S may call (its authorization policy allows S's SPIFFE ID, or has none),
  PassthroughCluster, the `outbound` listener and route configuration, and, when S is
  in the registry and a trust bundle exists, S's `inbound` listener and clusters and
  the `ROOTCA` secret. A sidecar thus never learns about services it may not call.
- `proxyless` (a gRPC client with no sidecar): every service's clusters and endpoints
  and API listeners; no inbound side, no RDS (routes are inline). Its clusters carry no
  `transport_socket_matches`: gRPC-Go and gRPC-Java NACK a cluster that has any (gRPC
  A27/A29 support only `transport_socket`), so proxyless clients reach plaintext
  endpoints (instances without a sidecar) only.
- Endpoints (EDS) are per locality: the group's zone gets priority 0 (endpoints.py).

Without a trust bundle (no CA yet) nothing that needs one is produced: no ROOTCA, no
inbound listener, and clusters carry no mTLS transport match.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3.endpoint_pb2 import ClusterLoadAssignment
from google.protobuf.message import Message

from gossamer.contract import identity, xds
from gossamer.contract.identity import ServiceKey
from gossamer.control.policy import DEFAULT_POLICY, ServicePolicy
from gossamer.control.translate import hostnames
from gossamer.discovery.model import RegistryState, Service

from . import clusters, endpoints, listeners, peer_tls, routes

PROXYLESS_NAMESPACE = "default"


@dataclass(frozen=True, order=True)
class NodeGroup:
    """A set of nodes served identically; `service` None means proxyless clients; `zone`
    is their locality zone (endpoint priorities depend on it)."""

    service: ServiceKey | None = None
    zone: str = ""

    @property
    def name(self) -> str:
        kind = "proxyless"
        if self.service is not None:
            kind = f"sidecar:{self.service.namespace}/{self.service.name}"
        return f"{kind}@{self.zone}" if self.zone else kind

    def __str__(self) -> str:
        return self.name


PROXYLESS = NodeGroup()

# type URL -> resource name -> message
GroupResources = dict[str, dict[str, Message]]


@dataclass(frozen=True)
class MeshInputs:
    """Everything translation depends on; equal inputs give byte-identical resources."""

    state: RegistryState
    trust_domain: str
    policies: Mapping[ServiceKey, ServicePolicy] = field(default_factory=dict)
    trust_bundle: bytes | None = None
    crl: bytes | None = None  # PEM CRLs pushed in ROOTCA with the bundle

    def policy(self, key: ServiceKey) -> ServicePolicy:
        return self.policies.get(key, DEFAULT_POLICY)


class Translator:
    """Translates the mesh once; `view(group)` then selects each group's resources.

    Resources common to several groups are the same message objects, so callers can
    serialise each once (see publisher.py)."""

    def __init__(self, inputs: MeshInputs) -> None:
        self.inputs = inputs
        self._services = sorted(inputs.state.services.values(), key=lambda s: s.key)
        self._mtls = inputs.trust_bundle is not None
        # (service, mTLS transport matches) -> its clusters; (service, zone) -> its CLAs
        self._outbound: dict[tuple[ServiceKey, bool], list[cluster_pb2.Cluster]] = {}
        self._assignments: dict[tuple[ServiceKey, str], list[ClusterLoadAssignment]] = {}
        self._passthrough = clusters.passthrough_cluster()
        self._inbound_clusters: dict[tuple[int, str], cluster_pb2.Cluster] = {}
        self._root_ca = (
            peer_tls.root_ca_secret(inputs.trust_bundle, inputs.crl)
            if inputs.trust_bundle
            else None
        )

    def groups(self) -> list[NodeGroup]:
        """The groups worth building ahead of any connection: proxyless and one per service."""
        return [PROXYLESS] + [NodeGroup(s.key) for s in self._services]

    def view(self, group: NodeGroup) -> GroupResources:
        if group.service is None:
            return self._proxyless_view(group)
        return self._sidecar_view(group)

    # -- views -----------------------------------------------------------------
    def _clusters(self, service: Service, mtls: bool) -> list[cluster_pb2.Cluster]:
        built = self._outbound.get((service.key, mtls))
        if built is None:
            policy = self.inputs.policy(service.key)
            td = self.inputs.trust_domain
            built = [
                clusters.outbound_cluster(service, port, policy, td, mtls=mtls)
                for port in service.ports
            ]
            self._outbound[(service.key, mtls)] = built
        return built

    def _endpoints(self, service: Service, zone: str) -> list[ClusterLoadAssignment]:
        assigned = self._assignments.get((service.key, zone))
        if assigned is None:
            members = self.inputs.state.endpoints_of(service.key)
            assigned = [
                endpoints.load_assignment(
                    xds.outbound_cluster(service.key, port.port), members, port.port, zone
                )
                for port in service.ports
            ]
            self._assignments[(service.key, zone)] = assigned
        return assigned

    def _common(self, reachable: list[Service], group: NodeGroup) -> GroupResources:
        out: GroupResources = {t: {} for t in xds.PUSH_ORDER}
        mtls = self._mtls and group.service is not None  # proxyless: no transport matches
        for service in reachable:
            for cluster in self._clusters(service, mtls):
                out[xds.CLUSTER][cluster.name] = cluster
            for cla in self._endpoints(service, group.zone):
                out[xds.ENDPOINT][cla.cluster_name] = cla
        if self._root_ca is not None:
            out[xds.SECRET][self._root_ca.name] = self._root_ca
        return out

    def _proxyless_view(self, group: NodeGroup) -> GroupResources:
        out = self._common(self._services, group)
        owners = hostnames.bare_owners((s.key for s in self._services), PROXYLESS_NAMESPACE)
        for service in self._services:
            bare = owners.get(service.key.name) == service.key
            policy = self.inputs.policy(service.key)
            for port in hostnames.http_ports(service):
                for name in hostnames.api_listener_names(service, port, bare=bare):
                    out[xds.LISTENER][name] = listeners.api_listener(name, service, port, policy)
        return out

    def _sidecar_view(self, group: NodeGroup) -> GroupResources:
        assert group.service is not None
        key = group.service
        td = self.inputs.trust_domain
        caller = identity.spiffe_id(td, key)
        reachable = [s for s in self._services if self.inputs.policy(s.key).allows(caller)]
        out = self._common(reachable, group)
        out[xds.CLUSTER][self._passthrough.name] = self._passthrough
        out[xds.LISTENER][xds.OUTBOUND_LISTENER] = listeners.outbound_listener(
            tcp_destinations(reachable), self.inputs.policy(key)
        )
        out[xds.ROUTE][xds.OUTBOUND_ROUTE] = routes.outbound_route_config(
            reachable, self.inputs.policies, td, key.namespace
        )
        own = self.inputs.state.services.get(key)
        if own is not None and own.ports and self._root_ca is not None:
            out[xds.LISTENER][xds.INBOUND_LISTENER] = listeners.inbound_listener(
                own, self.inputs.policy(key), td
            )
            for port in own.ports:
                cluster = self._inbound_clusters.get((port.port, port.protocol))
                if cluster is None:
                    cluster = clusters.inbound_cluster(port)
                    self._inbound_clusters[(port.port, port.protocol)] = cluster
                out[xds.CLUSTER][xds.inbound_cluster(port.port)] = cluster
        return out


def tcp_destinations(services: list[Service]) -> dict[int, str]:
    """Destination port -> cluster for TCP service ports; a port two TCP services share
    is ambiguous without an address to tell them apart, so neither gets it."""
    seen: dict[int, list[str]] = {}
    for service in services:
        for port in service.ports:
            if port.protocol == "tcp":
                seen.setdefault(port.port, []).append(xds.outbound_cluster(service.key, port.port))
    return {port: found[0] for port, found in seen.items() if len(found) == 1}
