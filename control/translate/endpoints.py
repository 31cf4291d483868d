"""ClusterLoadAssignments: a service port's endpoints grouped by locality (zone).

Every locality carries a `load_balancing_weight` (gRPC ignores localities without one:
docs/architecture.md, "Known pitfalls"): the sum of its healthy endpoints' weights, at
least 1, so that weighted-locality balancing preserves the endpoint weights across zones.
Health maps to Envoy's HealthStatus (draining -> DRAINING, unhealthy -> UNHEALTHY);
endpoints that have a sidecar carry `tlsMode: istio` in the `envoy.transport_socket_match`
metadata so the cluster's transport socket match picks mutual TLS for them.

Priorities follow the requesting node's locality, as Envoy and Istio do: the node's own
zone is priority 0, every other zone priority 1 (the registry has no regions, so the
"same region" level and the "rest" level are one), renumbered without gaps (gRPC NACKs a
gap). A node without a zone gets every locality at priority 0. The assignment is built
once per locality of the nodes asking (`local_zone`), not once per node.

Several nodes (docs/architecture.md, "Several nodes"). A requester that names its node
(`local_node`, the sidecar's `--node`) gets localities of (zone, node) with
`Locality.sub_zone` = the node, and priorities own node 0, own zone 1, the rest 2
(renumbered without gaps), so traffic stays on the node while it can and crosses nodes
only when the local instances are gone. Its own node's instances, and those of a node
without a registered gateway, are endpoints at their own addresses; the instances of a
node M that has a gateway (`gateways`) become one endpoint at M's gateway address, with
weight = M's healthy instances (at least 1, at most 128) and health HEALTHY while any of
them is: the sidecar's mTLS connection carries the SNI of the service port, which M's
gateway routes without terminating TLS. A requester without a node (proxyless gRPC
clients, Envoy, sidecars without `--node`) gets exactly the zone-only shape above.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from envoy.config.core.v3 import address_pb2, base_pb2, health_check_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from google.protobuf import wrappers_pb2

from gossamer.contract import xds
from gossamer.contract.vocabulary import Health
from gossamer.discovery.model import Endpoint

from .common import metadata

HEALTH_STATUS = {
    Health.HEALTHY: health_check_pb2.HEALTHY,
    Health.UNHEALTHY: health_check_pb2.UNHEALTHY,
    Health.DRAINING: health_check_pb2.DRAINING,
}


def _address(address: str, port: int) -> address_pb2.Address:
    return address_pb2.Address(
        socket_address=address_pb2.SocketAddress(address=address, port_value=port)
    )


def lb_endpoint(endpoint: Endpoint) -> endpoint_components_pb2.LbEndpoint:
    out = endpoint_components_pb2.LbEndpoint(
        endpoint=endpoint_components_pb2.Endpoint(
            address=_address(endpoint.address, endpoint.port),
            # an instance on several networks: its addresses on the others
            additional_addresses=[
                endpoint_components_pb2.Endpoint.AdditionalAddress(
                    address=_address(other, endpoint.port)
                )
                for other in endpoint.other_addresses
            ],
        ),
        health_status=HEALTH_STATUS[endpoint.health],
        load_balancing_weight=wrappers_pb2.UInt32Value(value=endpoint.weight),
    )
    if endpoint.mtls:
        out.metadata.CopyFrom(
            metadata(xds.TRANSPORT_SOCKET_MATCH, {xds.TLS_MODE_KEY: xds.TLS_MODE_MTLS})
        )
    return out


def priority_levels(zones: Iterable[str], local_zone: str) -> dict[str, int]:
    """Zone -> priority for a node in `local_zone`: own zone first, contiguous from 0."""
    wanted = {zone: (0 if not local_zone or zone == local_zone else 1) for zone in zones}
    levels = sorted(set(wanted.values()))
    return {zone: levels.index(level) for zone, level in wanted.items()}


MAX_GATEWAY_WEIGHT = 128  # the registry's bound on an endpoint weight


def node_priority_levels(
    localities: Iterable[tuple[str, str]], local_zone: str, local_node: str
) -> dict[tuple[str, str], int]:
    """(zone, node) -> priority: own node 0, own zone 1, the rest 2, contiguous from 0."""
    wanted = {}
    for zone, node in localities:
        if node == local_node:
            wanted[(zone, node)] = 0
        elif local_zone and zone == local_zone:
            wanted[(zone, node)] = 1
        else:
            wanted[(zone, node)] = 2
    levels = sorted(set(wanted.values()))
    return {loc: levels.index(level) for loc, level in wanted.items()}


def via_gateway(node: str, members: list[Endpoint], gateway: Endpoint) -> Endpoint:
    """The one endpoint standing for `members` (instances on `node`) at its gateway."""
    healthy = sum(1 for e in members if e.health is Health.HEALTHY)
    return Endpoint(
        service=members[0].service,
        instance_id=f"gateway~{node}",
        address=gateway.address,
        port=gateway.port,
        zone=members[0].zone,
        node=node,
        weight=min(MAX_GATEWAY_WEIGHT, max(1, healthy)),
        health=Health.HEALTHY if healthy else Health.UNHEALTHY,
        mtls=True,
    )


def node_assignment(
    cluster_name: str,
    endpoints: Iterable[Endpoint],
    service_port: int,
    local_zone: str,
    local_node: str,
    gateways: Mapping[str, Endpoint],
) -> endpoint_pb2.ClusterLoadAssignment:
    """The assignment for a requester on `local_node` (see the module docstring)."""
    by_locality: dict[tuple[str, str], list[Endpoint]] = {}
    remote: dict[str, list[Endpoint]] = {}
    for ep in endpoints:
        if not ep.serves(service_port):
            continue
        if ep.node and ep.node != local_node and ep.node in gateways:
            remote.setdefault(ep.node, []).append(ep)
        else:
            by_locality.setdefault((ep.zone, ep.node), []).append(ep)
    for node, members in remote.items():
        members.sort(key=lambda e: e.instance_id)
        stand_in = via_gateway(node, members, gateways[node])
        by_locality.setdefault((stand_in.zone, node), []).append(stand_in)
    priorities = node_priority_levels(by_locality, local_zone, local_node)
    localities = []
    for zone, node in sorted(by_locality):
        members = sorted(by_locality[(zone, node)], key=lambda e: e.instance_id)
        weight = sum(e.weight for e in members if e.health is Health.HEALTHY)
        localities.append(
            endpoint_components_pb2.LocalityLbEndpoints(
                locality=base_pb2.Locality(zone=zone, sub_zone=node),
                lb_endpoints=[lb_endpoint(e) for e in members],
                load_balancing_weight=wrappers_pb2.UInt32Value(value=max(1, weight)),
                priority=priorities[(zone, node)],
            )
        )
    return endpoint_pb2.ClusterLoadAssignment(cluster_name=cluster_name, endpoints=localities)


def load_assignment(
    cluster_name: str,
    endpoints: Iterable[Endpoint],
    service_port: int,
    local_zone: str = "",
    local_node: str = "",
    gateways: Mapping[str, Endpoint] | None = None,
) -> endpoint_pb2.ClusterLoadAssignment:
    """The endpoints serving `service_port`, in a stable order (zone, instance id), with
    the priorities a node in `local_zone` should use; with `local_node`, the node-aware
    form (`node_assignment`)."""
    if local_node:
        return node_assignment(
            cluster_name, endpoints, service_port, local_zone, local_node, gateways or {}
        )
    by_zone: dict[str, list[Endpoint]] = {}
    for ep in endpoints:
        if ep.serves(service_port):
            by_zone.setdefault(ep.zone, []).append(ep)
    localities = []
    priorities = priority_levels(by_zone, local_zone)
    for zone in sorted(by_zone):
        members = sorted(by_zone[zone], key=lambda e: e.instance_id)
        weight = sum(e.weight for e in members if e.health is Health.HEALTHY)
        localities.append(
            endpoint_components_pb2.LocalityLbEndpoints(
                locality=base_pb2.Locality(zone=zone),
                lb_endpoints=[lb_endpoint(e) for e in members],
                load_balancing_weight=wrappers_pb2.UInt32Value(value=max(1, weight)),
                priority=priorities[zone],
            )
        )
    return endpoint_pb2.ClusterLoadAssignment(cluster_name=cluster_name, endpoints=localities)
