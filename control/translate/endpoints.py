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
"""

from __future__ import annotations

from collections.abc import Iterable

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


def load_assignment(
    cluster_name: str, endpoints: Iterable[Endpoint], service_port: int, local_zone: str = ""
) -> endpoint_pb2.ClusterLoadAssignment:
    """The endpoints serving `service_port`, in a stable order (zone, instance id), with
    the priorities a node in `local_zone` should use."""
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
