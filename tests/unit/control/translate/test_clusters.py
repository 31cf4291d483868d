from __future__ import annotations

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.load_balancing_policies.least_request.v3 import least_request_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from xds.type.v3 import typed_struct_pb2

from gossamer.contract import lb_policies, xds
from gossamer.contract.identity import ServiceKey
from gossamer.control.config import mesh_from_mapping
from gossamer.control.policy import ServicePolicy
from gossamer.control.translate import clusters
from gossamer.control.translate.references import cluster_eds_name, cluster_secrets
from gossamer.discovery.model import Service, ServicePort

SVC = Service("echo", ports=(ServicePort(50051, "grpc"),))
PORT = SVC.ports[0]


DEFAULT = ServicePolicy()


def build(policy: ServicePolicy = DEFAULT, *, mtls: bool = False) -> cluster_pb2.Cluster:
    return clusters.outbound_cluster(SVC, PORT, policy, "gossamer.local", mtls=mtls)


def policy_of(**service: object) -> ServicePolicy:
    mesh = mesh_from_mapping({"services": [{"name": "echo", **service}]})
    return mesh.policy_for(ServiceKey("default", "echo"))


def policy_types(cluster: cluster_pb2.Cluster) -> list[str]:
    return [
        p.typed_extension_config.typed_config.type_url.rsplit(".", 1)[-1]
        for p in cluster.load_balancing_policy.policies
    ]


def test_eds_cluster_over_ads():
    cluster = build()
    assert cluster.name == "outbound|50051||echo.default"
    assert cluster.type == cluster_pb2.Cluster.EDS
    assert cluster.eds_cluster_config.eds_config.HasField("ads")
    assert cluster_eds_name(cluster) == cluster.name
    assert cluster.lb_policy == cluster_pb2.Cluster.ROUND_ROBIN
    assert not cluster.HasField("load_balancing_policy")
    assert (
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
        in cluster.typed_extension_protocol_options
    )
    meta = cluster.metadata.filter_metadata["gossamer"]
    assert meta["service"] == "echo" and meta["port"] == 50051


@pytest.mark.parametrize(
    ("lb", "expected"),
    [
        ("least_request", ["LeastRequest", "WrrLocality"]),
        ("random", ["Random", "WrrLocality"]),
        ("ewma", ["TypedStruct", "LeastRequest", "WrrLocality"]),
    ],
)
def test_lb_policies_fall_back_to_what_grpc_supports(lb, expected):
    cluster = build(policy_of(lb_policy=lb))
    assert policy_types(cluster) == expected


def test_ewma_marker_and_least_request_choices():
    cluster = build(policy_of(lb_policy="ewma"))
    first, second, _ = cluster.load_balancing_policy.policies
    assert first.typed_extension_config.name == lb_policies.PEAK_EWMA_NAME
    marker = typed_struct_pb2.TypedStruct()
    assert first.typed_extension_config.typed_config.Unpack(marker)
    assert marker.type_url == lb_policies.PEAK_EWMA_TYPE_URL and marker.value["decay"] == "10s"
    least = least_request_pb2.LeastRequest()
    assert second.typed_extension_config.typed_config.Unpack(least)
    assert least.choice_count.value == 2


def test_ring_hash_uses_xx_hash():
    cluster = build(policy_of(lb_policy="ring_hash", hash_header="x-user"))
    assert cluster.lb_policy == cluster_pb2.Cluster.RING_HASH
    assert cluster.ring_hash_lb_config.hash_function == cluster_pb2.Cluster.RingHashLbConfig.XX_HASH


def test_retry_budget_goes_on_the_circuit_breakers():
    cluster = build(policy_of(retries={"attempts": 2, "budget_percent": 25}))
    [threshold] = cluster.circuit_breakers.thresholds
    assert threshold.retry_budget.budget_percent.value == 25.0
    assert not build().HasField("circuit_breakers")


def test_mtls_transport_socket_match():
    assert not build().transport_socket_matches
    cluster = build(mtls=True)
    assert not cluster.HasField("transport_socket")  # gRPC reads only this: stays plaintext
    tls_match, plain = cluster.transport_socket_matches
    assert dict(tls_match.match) == {xds.TLS_MODE_KEY: xds.TLS_MODE_MTLS}
    assert (
        dict(plain.match) == {}
        and plain.transport_socket.name == "envoy.transport_sockets.raw_buffer"
    )
    context = tls_pb2.UpstreamTlsContext()
    assert tls_match.transport_socket.typed_config.Unpack(context)
    assert context.sni == "outbound_.50051_._.echo.default.svc.gossamer.local"
    common = context.common_tls_context
    assert [s.name for s in common.tls_certificate_sds_secret_configs] == [xds.WORKLOAD_SECRET]
    validation = common.combined_validation_context
    [san] = validation.default_validation_context.match_typed_subject_alt_names
    assert san.matcher.exact == "spiffe://gossamer.local/ns/default/sa/echo"
    assert validation.validation_context_sds_secret_config.name == xds.ROOT_CA_SECRET
    assert cluster_secrets(cluster) == {xds.ROOT_CA_SECRET}


def test_inbound_and_passthrough_clusters():
    inbound = clusters.inbound_cluster(ServicePort(8080))
    assert inbound.name == "inbound|8080" and inbound.type == cluster_pb2.Cluster.STATIC
    address = inbound.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address
    assert (address.address, address.port_value) == ("127.0.0.1", 8080)
    assert cluster_eds_name(inbound) is None
    passthrough = clusters.passthrough_cluster()
    assert passthrough.type == cluster_pb2.Cluster.ORIGINAL_DST
    assert passthrough.lb_policy == cluster_pb2.Cluster.CLUSTER_PROVIDED
