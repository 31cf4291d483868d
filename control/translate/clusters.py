"""Clusters: one per service port (`outbound|<port>||<svc>.<ns>`, EDS), the sidecar's
inbound clusters (`inbound|<port>` -> the app on 127.0.0.1) and PassthroughCluster.

The load-balancing policy's form is `gossamer.contract.lb_policies` (shared with the
sidecar, which decodes it).

Upstream TLS goes through `transport_socket_matches`: endpoints whose metadata carries
`tlsMode: istio` (they have a sidecar) get mutual TLS checking the service's SPIFFE ID,
others plaintext. Only sidecars get them (`mtls=True`): grpcio ignores the field, but
gRPC-Go and gRPC-Java NACK a cluster that has any, so proxyless clients get clusters
without it (views.py) and call plaintext endpoints only.
"""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, protocol_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2

from gossamer.contract import identity, lb_policies, xds
from gossamer.contract.vocabulary import LbPolicy
from gossamer.contract.xds import HTTP_PROTOCOL_OPTIONS
from gossamer.control.policy import ServicePolicy
from gossamer.discovery.model import Service, ServicePort

from . import peer_tls
from .common import ads_source, duration, metadata, pack, struct
from .resilience import apply_resilience

CONNECT_TIMEOUT = 5.0


def _use_http2(cluster: cluster_pb2.Cluster) -> None:
    options = http_protocol_options_pb2.HttpProtocolOptions(
        explicit_http_config=http_protocol_options_pb2.HttpProtocolOptions.ExplicitHttpConfig(
            http2_protocol_options=protocol_pb2.Http2ProtocolOptions()
        )
    )
    cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].CopyFrom(pack(options))


def outbound_cluster(
    service: Service, port: ServicePort, policy: ServicePolicy, trust_domain: str, *, mtls: bool
) -> cluster_pb2.Cluster:
    """The EDS cluster for one service port; `mtls` adds the tlsMode transport match
    (only when a trust bundle exists to verify peers with)."""
    key = service.key
    name = xds.outbound_cluster(key, port.port)
    cluster = cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.EDS,
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(
            eds_config=ads_source(), service_name=name
        ),
        connect_timeout=duration(CONNECT_TIMEOUT),
        metadata=metadata(
            xds.GOSSAMER_METADATA,
            {
                "service": key.name,
                "namespace": key.namespace,
                "port": port.port,
                "protocol": port.protocol,
                "lb_policy": policy.lb_policy,
            },
        ),
    )
    lb_policies.encode(cluster, LbPolicy(policy.lb_policy))
    apply_resilience(cluster, policy, http2=port.protocol in ("http2", "grpc"))
    if port.protocol in ("http2", "grpc"):
        _use_http2(cluster)
    if mtls:
        context = peer_tls.upstream_tls(
            identity.spiffe_id(trust_domain, key), xds.sni(trust_domain, key, port.port)
        )
        cluster.transport_socket_matches.extend(
            [
                cluster_pb2.Cluster.TransportSocketMatch(
                    name="tlsMode-istio",
                    match=struct({xds.TLS_MODE_KEY: xds.TLS_MODE_MTLS}),
                    transport_socket=peer_tls.tls_socket(context),
                ),
                cluster_pb2.Cluster.TransportSocketMatch(
                    name="tlsMode-disabled",
                    match=struct({}),
                    transport_socket=peer_tls.raw_socket(),
                ),
            ]
        )
    return cluster


def inbound_cluster(port: ServicePort) -> cluster_pb2.Cluster:
    """The local app behind the sidecar: a static cluster to 127.0.0.1:<port>."""
    name = xds.inbound_cluster(port.port)
    cluster = cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.STATIC,
        connect_timeout=duration(CONNECT_TIMEOUT),
        load_assignment=endpoint_pb2.ClusterLoadAssignment(
            cluster_name=name,
            endpoints=[
                endpoint_components_pb2.LocalityLbEndpoints(
                    lb_endpoints=[
                        endpoint_components_pb2.LbEndpoint(
                            endpoint=endpoint_components_pb2.Endpoint(
                                address=address_pb2.Address(
                                    socket_address=address_pb2.SocketAddress(
                                        address="127.0.0.1", port_value=port.port
                                    )
                                )
                            )
                        )
                    ]
                )
            ],
        ),
    )
    if port.protocol in ("http2", "grpc"):
        _use_http2(cluster)
    return cluster


def passthrough_cluster() -> cluster_pb2.Cluster:
    """Traffic to destinations outside the mesh goes where it was addressed."""
    return cluster_pb2.Cluster(
        name=xds.PASSTHROUGH_CLUSTER,
        type=cluster_pb2.Cluster.ORIGINAL_DST,
        lb_policy=cluster_pb2.Cluster.CLUSTER_PROVIDED,
        connect_timeout=duration(CONNECT_TIMEOUT),
    )
