"""Routes: the `outbound` RouteConfiguration and the route actions shared with the API
listeners of proxyless gRPC clients.

One virtual host per service port (`<svc>.<ns>:<port>`), so a request's Host picks the
port's cluster; its domains are `svc.ns`, `svc.ns.svc.<trust domain>` and, when the name
is unambiguous for the caller, `svc`, each with `:port`, and without the port for the
service's primary port (hostnames.py). Virtual host domains must be unique within a route
configuration, which this scheme guarantees. A last virtual host `allow_any` (`*`)
sends everything else to PassthroughCluster.

Route actions carry the policy: `timeout` (and the same value as
`max_stream_duration`, which is what gRPC honours), `idle_timeout` (the service's
`stream_idle_timeout`: callers' sidecars cut a request to it that stalls; gRPC clients
ignore the field), a retry policy (Envoy retry_on
names; HTTP status codes through `retriable-status-codes`; `attempts` = num_retries,
omitted when 0 because gRPC NACKs num_retries 0) and, for ring_hash, a header hash policy.
The retry budget lives on the cluster's circuit breakers (clusters.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from envoy.config.route.v3 import route_components_pb2, route_pb2
from google.protobuf import wrappers_pb2

from gossamer.contract import xds
from gossamer.contract.identity import ServiceKey
from gossamer.control.policy import DEFAULT_POLICY, ServicePolicy
from gossamer.control.translate import hostnames
from gossamer.discovery.model import Service, ServicePort

from .common import duration

ALLOW_ANY_HOST = "allow_any"


def retry_policy(policy: ServicePolicy) -> route_components_pb2.RetryPolicy | None:
    retries = policy.retries
    if retries is None or retries.attempts == 0:
        return None
    conditions = list(retries.on)
    if retries.status_codes:
        conditions.append("retriable-status-codes")
    out = route_components_pb2.RetryPolicy(
        retry_on=",".join(conditions),
        num_retries=wrappers_pb2.UInt32Value(value=retries.attempts),
        retriable_status_codes=list(retries.status_codes),
    )
    if retries.per_try_timeout is not None:
        out.per_try_timeout.CopyFrom(duration(retries.per_try_timeout))
    return out


def route_action(cluster: str, policy: ServicePolicy) -> route_components_pb2.RouteAction:
    action = route_components_pb2.RouteAction(cluster=cluster)
    action.idle_timeout.CopyFrom(duration(policy.stream_idle_timeout))
    if policy.timeout is not None:
        action.timeout.CopyFrom(duration(policy.timeout))
        if policy.timeout > 0:
            action.max_stream_duration.max_stream_duration.CopyFrom(duration(policy.timeout))
    retry = retry_policy(policy)
    if retry is not None:
        action.retry_policy.CopyFrom(retry)
    if policy.lb_policy == "ring_hash" and policy.hash_header:
        action.hash_policy.append(
            route_components_pb2.RouteAction.HashPolicy(
                header=route_components_pb2.RouteAction.HashPolicy.Header(
                    header_name=policy.hash_header
                )
            )
        )
    return action


def default_route(action: route_components_pb2.RouteAction) -> route_components_pb2.Route:
    return route_components_pb2.Route(
        name="default", match=route_components_pb2.RouteMatch(prefix="/"), route=action
    )


def service_virtual_host(
    service: Service,
    port: ServicePort,
    policy: ServicePolicy,
    trust_domain: str,
    *,
    bare: bool,
    domains: list[str] | None = None,
) -> route_components_pb2.VirtualHost:
    key = service.key
    hosts = hostnames.host_names(service, port, trust_domain, bare=bare)
    return route_components_pb2.VirtualHost(
        name=f"{key.name}.{key.namespace}:{port.port}",
        domains=domains if domains is not None else hosts.all(),
        routes=[default_route(route_action(xds.outbound_cluster(key, port.port), policy))],
    )


def outbound_route_config(
    services: Iterable[Service],
    policies: Mapping[ServiceKey, ServicePolicy],
    trust_domain: str,
    caller_namespace: str,
) -> route_pb2.RouteConfiguration:
    """The sidecar's `outbound` routes to the services it may call."""
    reachable = sorted(services, key=lambda s: s.key)
    owners = hostnames.bare_owners((s.key for s in reachable), caller_namespace)
    hosts = []
    for service in reachable:
        policy = policies.get(service.key, DEFAULT_POLICY)
        bare = owners.get(service.key.name) == service.key
        for port in hostnames.http_ports(service):
            hosts.append(service_virtual_host(service, port, policy, trust_domain, bare=bare))
    hosts.append(
        route_components_pb2.VirtualHost(
            name=ALLOW_ANY_HOST,
            domains=["*"],
            routes=[
                default_route(route_components_pb2.RouteAction(cluster=xds.PASSTHROUGH_CLUSTER))
            ],
        )
    )
    return route_pb2.RouteConfiguration(
        name=xds.OUTBOUND_ROUTE,
        virtual_hosts=hosts,
        validate_clusters=wrappers_pb2.BoolValue(value=False),
    )


def inbound_route_config(port: ServicePort) -> route_pb2.RouteConfiguration:
    """Inline routes of an inbound HTTP filter chain: everything to the local app."""
    cluster = xds.inbound_cluster(port.port)
    return route_pb2.RouteConfiguration(
        name=f"inbound|{port.port}",
        virtual_hosts=[
            route_components_pb2.VirtualHost(
                name=f"inbound|http|{port.port}",
                domains=["*"],
                routes=[default_route(route_components_pb2.RouteAction(cluster=cluster))],
            )
        ],
    )
