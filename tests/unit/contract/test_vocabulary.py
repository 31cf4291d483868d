"""Every member of each policy enum is handled on both ends of the wire.

Table-driven over the enums of `gossamer.contract.vocabulary`: for each member, the
control plane's translation writes it into an xDS resource, the sidecar's decoder reads
the same member back, and the sidecar implements it. A member added on one side only
fails here.
"""

from __future__ import annotations

import random

import pytest
from google.protobuf import any_pb2

from gossamer.contract.identity import ServiceKey
from gossamer.contract.vocabulary import GrpcRetryOn, Health, HttpRetryOn, LbPolicy, Protocol
from gossamer.control.policy import RetryPolicy, ServicePolicy
from gossamer.control.translate import clusters, endpoints, routes
from gossamer.discovery.model import Endpoint, Service, ServicePort
from gossamer.proxy.config import Endpoint as ProxyEndpoint
from gossamer.proxy.upstream.balancer import Host, make_balancer
from gossamer.proxy.xds.clusters import decode_clusters
from gossamer.proxy.xds.endpoints import load_assignment
from gossamer.proxy.xds.listeners import retry_policy

KEY = ServiceKey("default", "echo")


def packed(message) -> any_pb2.Any:
    out = any_pb2.Any()
    out.Pack(message)
    return out


def sidecar_cluster(service: Service, policy: ServicePolicy):
    """The control plane's cluster for the service's first port, as the sidecar reads it."""
    cluster = clusters.outbound_cluster(
        service, service.ports[0], policy, "gossamer.local", mtls=True
    )
    return decode_clusters([packed(cluster)]).outbound[cluster.name]


@pytest.mark.parametrize("policy", list(LbPolicy))
def test_every_lb_policy_is_translated_decoded_and_balanced(policy: LbPolicy) -> None:
    service = Service("echo", ports=(ServicePort(8080, "http"),))
    spec = sidecar_cluster(service, ServicePolicy(lb_policy=policy.value))
    decoded = LbPolicy.RING_HASH if spec.ring_hash else spec.cluster.lb_policy
    assert decoded is policy
    hosts = [Host(ProxyEndpoint(f"10.0.0.{i}", 8080)) for i in range(1, 4)]
    balancer = make_balancer(policy, hosts, rng=random.Random(1), clock=lambda: 0.0)
    assert balancer.policy is policy


@pytest.mark.parametrize("protocol", list(Protocol))
def test_every_port_protocol_reaches_the_sidecar(protocol: Protocol) -> None:
    service = Service("echo", ports=(ServicePort(8080, protocol.value),))
    spec = sidecar_cluster(service, ServicePolicy())
    assert spec.cluster.protocol is protocol


@pytest.mark.parametrize("condition", [*HttpRetryOn, *GrpcRetryOn])
def test_every_retry_condition_is_translated_and_understood(condition: str) -> None:
    policy = ServicePolicy(retries=RetryPolicy(attempts=2, on=(str(condition),)))
    wire = routes.retry_policy(policy)
    assert wire is not None and str(condition) in wire.retry_on.split(",")
    decoded = retry_policy(wire, "route")  # an unknown condition raises ConfigError
    assert decoded is not None and decoded.attempts == 3
    if isinstance(condition, GrpcRetryOn):
        assert decoded.retry_grpc_statuses, condition


@pytest.mark.parametrize("health", list(Health))
def test_every_health_state_reaches_the_sidecar(health: Health) -> None:
    endpoint = Endpoint(KEY, "echo-1", "10.0.0.1", 15006, health=health)
    cla = endpoints.load_assignment("outbound|8080||echo.default", [endpoint], 8080)
    (spec,) = load_assignment(cla, cla.cluster_name)
    assert spec.endpoint.health is health
