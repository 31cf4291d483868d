"""Clusters: one per service port (`outbound|<port>||<svc>.<ns>`, EDS), the sidecar's
inbound clusters (`inbound|<port>` -> the app on 127.0.0.1) and PassthroughCluster.

Load-balancing policy mapping, chosen so Envoy, gRPC's xDS client and our sidecar all
accept every cluster (gRPC NACKs a `lb_policy` enum other than ROUND_ROBIN/RING_HASH,
and takes the first entry of `load_balancing_policy` it supports, gRFC A52):

| mesh.yaml      | Cluster                                                              |
|----------------|----------------------------------------------------------------------|
| round_robin    | lb_policy ROUND_ROBIN                                                |
| ring_hash      | lb_policy RING_HASH, XX_HASH ring (routes hash `hash_header`)         |
| least_request  | load_balancing_policy [LeastRequest(2 choices), WrrLocality(RR)]     |
| random         | load_balancing_policy [Random, WrrLocality(RR)]                      |
| ewma           | load_balancing_policy [PEAK_EWMA marker, LeastRequest, WrrLocality]  |

The ewma marker is a standard extension entry that only our sidecar implements: a
`TypedExtensionConfig` named `gossamer.lb.peak_ewma` whose config is an
`xds.type.v3.TypedStruct` with type URL `type.googleapis.com/gossamer.lb.v1.PeakEwma`
and `{decay: "10s"}`; other clients skip it and use the next entry.

Upstream TLS goes through `transport_socket_matches`: endpoints whose metadata carries
`tlsMode: istio` (they have a sidecar) get mutual TLS checking the service's SPIFFE ID,
others plaintext. gRPC ignores `transport_socket_matches` (it reads only
`transport_socket`), so proxyless clients can call plaintext endpoints only.
"""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, extension_pb2, protocol_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.extensions.load_balancing_policies.least_request.v3 import least_request_pb2
from envoy.extensions.load_balancing_policies.random.v3 import random_pb2
from envoy.extensions.load_balancing_policies.round_robin.v3 import round_robin_pb2
from envoy.extensions.load_balancing_policies.wrr_locality.v3 import wrr_locality_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from google.protobuf import wrappers_pb2
from google.protobuf.message import Message
from xds.type.v3 import typed_struct_pb2

from gossamer.contract import identity, xds
from gossamer.contract.xds import HTTP_PROTOCOL_OPTIONS, PEAK_EWMA_NAME, PEAK_EWMA_TYPE_URL
from gossamer.control.policy import ServicePolicy
from gossamer.discovery.model import Service, ServicePort

from . import tls
from .common import ads_source, duration, metadata, pack, struct
from .resilience import apply_resilience

CONNECT_TIMEOUT = 5.0
PEAK_EWMA_DECAY = "10s"


def _policy_entry(name: str, config: Message) -> cluster_pb2.LoadBalancingPolicy.Policy:
    return cluster_pb2.LoadBalancingPolicy.Policy(
        typed_extension_config=extension_pb2.TypedExtensionConfig(
            name=name, typed_config=pack(config)
        )
    )


def _wrr_round_robin() -> cluster_pb2.LoadBalancingPolicy.Policy:
    inner = cluster_pb2.LoadBalancingPolicy(
        policies=[
            _policy_entry("envoy.load_balancing_policies.round_robin", round_robin_pb2.RoundRobin())
        ]
    )
    return _policy_entry(
        "envoy.load_balancing_policies.wrr_locality",
        wrr_locality_pb2.WrrLocality(endpoint_picking_policy=inner),
    )


def _least_request() -> cluster_pb2.LoadBalancingPolicy.Policy:
    return _policy_entry(
        "envoy.load_balancing_policies.least_request",
        least_request_pb2.LeastRequest(choice_count=wrappers_pb2.UInt32Value(value=2)),
    )


def _set_lb(cluster: cluster_pb2.Cluster, policy: ServicePolicy) -> None:
    lb = policy.lb_policy
    if lb == "round_robin":
        cluster.lb_policy = cluster_pb2.Cluster.ROUND_ROBIN
    elif lb == "ring_hash":
        cluster.lb_policy = cluster_pb2.Cluster.RING_HASH
        cluster.ring_hash_lb_config.hash_function = cluster_pb2.Cluster.RingHashLbConfig.XX_HASH
        cluster.ring_hash_lb_config.minimum_ring_size.value = 1024
    elif lb == "least_request":
        cluster.load_balancing_policy.policies.extend([_least_request(), _wrr_round_robin()])
    elif lb == "random":
        cluster.load_balancing_policy.policies.extend(
            [
                _policy_entry("envoy.load_balancing_policies.random", random_pb2.Random()),
                _wrr_round_robin(),
            ]
        )
    elif lb == "ewma":
        marker = typed_struct_pb2.TypedStruct(
            type_url=PEAK_EWMA_TYPE_URL, value=struct({"decay": PEAK_EWMA_DECAY})
        )
        cluster.load_balancing_policy.policies.extend(
            [_policy_entry(PEAK_EWMA_NAME, marker), _least_request(), _wrr_round_robin()]
        )
    else:  # pragma: no cover - config.py validates the choice
        raise ValueError(f"unknown lb_policy {lb!r}")


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
    _set_lb(cluster, policy)
    apply_resilience(cluster, policy, http2=port.protocol in ("http2", "grpc"))
    if port.protocol in ("http2", "grpc"):
        _use_http2(cluster)
    if mtls:
        context = tls.upstream_tls(
            identity.spiffe_id(trust_domain, key), xds.sni(trust_domain, key, port.port)
        )
        cluster.transport_socket_matches.extend(
            [
                cluster_pb2.Cluster.TransportSocketMatch(
                    name="tlsMode-istio",
                    match=struct({xds.TLS_MODE_KEY: xds.TLS_MODE_MTLS}),
                    transport_socket=tls.tls_socket(context),
                ),
                cluster_pb2.Cluster.TransportSocketMatch(
                    name="tlsMode-disabled", match=struct({}), transport_socket=tls.raw_socket()
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
