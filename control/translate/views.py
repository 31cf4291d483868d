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
  A group with a node (`--node`, node metadata `GOSSAMER_NODE`) gets node-aware
  assignments: own node first, then own zone, then the rest, and other nodes'
  instances at their node's gateway when it has one (endpoints.py, "Several nodes").
- `gateway:<node>` (a node gateway, identity `gateway.gossamer-system`): every service's
  clusters (mTLS matches) and assignments with every instance at its own address,
  localities naming their node (`sub_zone`), plus the gateways' own cluster
  (`outbound|<port>||gateway.gossamer-system`): it routes to its node's instances and
  tells peer nodes apart by address. It also gets the `outbound` listener and route
  configuration (which it does not use) so the sidecar's xDS client accepts the set.

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
from gossamer.contract.vocabulary import Health
from gossamer.control.policy import DEFAULT_POLICY, ServicePolicy
from gossamer.control.translate import hostnames
from gossamer.discovery.model import Endpoint, RegistryState, Service, ServicePort

from . import clusters, endpoints, listeners, peer_tls, routes

PROXYLESS_NAMESPACE = "default"


@dataclass(frozen=True, order=True)
class NodeGroup:
    """A set of nodes served identically; `service` None means proxyless clients; `zone`
    is their locality zone and `node` their node (endpoint priorities depend on both)."""

    service: ServiceKey | None = None
    zone: str = ""
    node: str = ""

    @property
    def gateway(self) -> bool:
        return self.service == identity.gateway_key()

    @property
    def name(self) -> str:
        kind = "proxyless"
        if self.gateway:
            kind = f"gateway:{self.node}"
        elif self.service is not None:
            kind = f"sidecar:{self.service.namespace}/{self.service.name}"
        where = f"@{self.zone}" if self.zone else ""
        if self.node and not self.gateway:
            where += f"/{self.node}"
        return kind + where

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
        # (service, mTLS transport matches) -> its clusters; (service, zone, node) -> its CLAs
        self._outbound: dict[tuple[ServiceKey, bool], list[cluster_pb2.Cluster]] = {}
        self._assignments: dict[tuple[ServiceKey, str, str], list[ClusterLoadAssignment]] = {}
        self.gateways = gateways_by_node(inputs.state)
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
        if group.gateway:
            return self._gateway_view(group)
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

    def _endpoints(self, service: Service, zone: str, node: str) -> list[ClusterLoadAssignment]:
        """`node` "" is the zone-only form; GATEWAY_VIEW every instance at its address."""
        assigned = self._assignments.get((service.key, zone, node))
        if assigned is None:
            members = self.inputs.state.endpoints_of(service.key)
            direct = node == GATEWAY_VIEW
            assigned = [
                endpoints.load_assignment(
                    xds.outbound_cluster(service.key, port.port),
                    members,
                    port.port,
                    zone,
                    node,
                    {} if direct else self.gateways,
                )
                for port in service.ports
            ]
            self._assignments[(service.key, zone, node)] = assigned
        return assigned

    def _common(self, reachable: list[Service], group: NodeGroup) -> GroupResources:
        out: GroupResources = {t: {} for t in xds.PUSH_ORDER}
        mtls = self._mtls and group.service is not None  # proxyless: no transport matches
        node = GATEWAY_VIEW if group.gateway else group.node
        for service in reachable:
            for cluster in self._clusters(service, mtls):
                out[xds.CLUSTER][cluster.name] = cluster
            for cla in self._endpoints(service, group.zone, node):
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

    def _gateway_view(self, group: NodeGroup) -> GroupResources:
        gateways = self._gateway_service()
        out = self._common([*self._services, *gateways], group)
        out[xds.CLUSTER][self._passthrough.name] = self._passthrough
        out[xds.LISTENER][xds.OUTBOUND_LISTENER] = listeners.outbound_listener({}, DEFAULT_POLICY)
        out[xds.ROUTE][xds.OUTBOUND_ROUTE] = routes.outbound_route_config(
            [], self.inputs.policies, self.inputs.trust_domain, identity.CONTROL_NAMESPACE
        )
        return out

    def _gateway_service(self) -> list[Service]:
        """The registered gateways as a service (one port: the first gateway's), so a
        gateway learns its peers' addresses; none when no gateway is registered."""
        found = self.inputs.state.endpoints_of(identity.gateway_key())
        if not found:
            return []
        return [gateway_service(found[0].port)]

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


GATEWAY_VIEW = "*"  # the `node` of assignments a gateway gets: every instance direct


def gateway_service(port: int) -> Service:
    """The gateways' service, for the gateway view's cluster (not in the registry)."""
    key = identity.gateway_key()
    return Service(key.name, key.namespace, (ServicePort(port, "tcp"),))


def gateways_by_node(state: RegistryState) -> dict[str, Endpoint]:
    """Node -> its registered gateway (a healthy one, the first by instance id)."""
    found: dict[str, Endpoint] = {}
    for ep in state.endpoints_of(identity.gateway_key()):
        if ep.node and ep.health is Health.HEALTHY and ep.node not in found:
            found[ep.node] = ep
    return found


def tcp_destinations(services: list[Service]) -> dict[int, str]:
    """Destination port -> cluster for TCP service ports; a port two TCP services share
    is ambiguous without an address to tell them apart, so neither gets it."""
    seen: dict[int, list[str]] = {}
    for service in services:
        for port in service.ports:
            if port.protocol == "tcp":
                seen.setdefault(port.port, []).append(xds.outbound_cluster(service.key, port.port))
    return {port: found[0] for port, found in seen.items() if len(found) == 1}
