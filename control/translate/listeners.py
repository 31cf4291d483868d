"""Listeners: the sidecar's `outbound` (15001) and `inbound` (15006), and the API
listeners of proxyless gRPC clients.

- `outbound`: HttpConnectionManager -> RDS `outbound` over ADS; plus one filter chain
  per TCP service port (matched on the original destination port) -> tcp_proxy. Its
  `stream_idle_timeout` and `request_timeout` are the sidecar's own service's (what its
  app's requests get; each route's `idle_timeout` replaces the first).
- `inbound`: TLS inspector; one filter chain per port of the sidecar's own service,
  matched on the SNI the caller sends (xds.sni), so explicit mode (everything arrives
  on 15006) and transparent mode work alike. Downstream mTLS requires a mesh client
  certificate; an RBAC filter (HTTP or network) enforces the authorization policy;
  the route goes to `inbound|<port>`; `stream_idle_timeout` and `request_timeout` are
  the service's (what its callers' requests get).
- API listeners (`svc`, `svc:port`, `svc.ns`, `svc.ns:port`): HttpConnectionManager
  with the route configuration inline (one virtual host, domains `*`) and the router
  filter with its typed_config, which gRPC's xDS client requires. No RBAC there:
  gRPC NACKs filters it does not support on clients.
"""

from __future__ import annotations

from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.config.listener.v3 import api_listener_pb2, listener_components_pb2, listener_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import wrappers_pb2

from gossamer.contract import ports, xds
from gossamer.control.policy import DEFAULT_POLICY, ServicePolicy
from gossamer.discovery.model import Service, ServicePort

from . import peer_tls, routes
from .common import ads_source, duration, pack

HCM = "envoy.filters.network.http_connection_manager"
TCP_PROXY = "envoy.filters.network.tcp_proxy"
ROUTER = "envoy.filters.http.router"
HTTP_RBAC = "envoy.filters.http.rbac"
NETWORK_RBAC = "envoy.filters.network.rbac"
TLS_INSPECTOR = "envoy.filters.listener.tls_inspector"
ALLOWED_CALLERS = "allowed-callers"


def _socket(host: str, port: int) -> address_pb2.Address:
    return address_pb2.Address(
        socket_address=address_pb2.SocketAddress(address=host, port_value=port)
    )


def _router() -> hcm_pb2.HttpFilter:
    return hcm_pb2.HttpFilter(name=ROUTER, typed_config=pack(router_pb2.Router()))


def _hcm_filter(manager: hcm_pb2.HttpConnectionManager) -> listener_components_pb2.Filter:
    return listener_components_pb2.Filter(name=HCM, typed_config=pack(manager))


def rbac_rules(policy: ServicePolicy, trust_domain: str) -> rbac_pb2.RBAC:
    """ALLOW rules: the listed SPIFFE IDs, or (no authorization) any mesh identity."""
    if policy.authorization is None:
        patterns = [f"spiffe://{trust_domain}/*"]
    else:
        patterns = list(policy.authorization.allow)
    principals = []
    for pattern in patterns:
        matcher = (
            string_pb2.StringMatcher(prefix=pattern[:-1])
            if pattern.endswith("*")
            else string_pb2.StringMatcher(exact=pattern)
        )
        principals.append(
            rbac_pb2.Principal(
                authenticated=rbac_pb2.Principal.Authenticated(principal_name=matcher)
            )
        )
    policies = {}
    if principals:
        policies[ALLOWED_CALLERS] = rbac_pb2.Policy(
            permissions=[rbac_pb2.Permission(any=True)], principals=principals
        )
    return rbac_pb2.RBAC(action=rbac_pb2.RBAC.ALLOW, policies=policies)


def stream_timeouts(manager: hcm_pb2.HttpConnectionManager, policy: ServicePolicy) -> None:
    """Set the manager's `stream_idle_timeout` and `request_timeout` from the policy."""
    manager.stream_idle_timeout.CopyFrom(duration(policy.stream_idle_timeout))
    manager.request_timeout.CopyFrom(duration(policy.request_timeout))


def outbound_listener(
    tcp_ports: dict[int, str], policy: ServicePolicy = DEFAULT_POLICY
) -> listener_pb2.Listener:
    """`tcp_ports`: destination port -> outbound cluster of the TCP service there;
    `policy`: the sidecar's own service's (its stream timeouts)."""
    chains = []
    for port in sorted(tcp_ports):
        chains.append(
            listener_components_pb2.FilterChain(
                name=f"tcp|{port}",
                filter_chain_match=listener_components_pb2.FilterChainMatch(
                    destination_port=wrappers_pb2.UInt32Value(value=port)
                ),
                filters=[
                    listener_components_pb2.Filter(
                        name=TCP_PROXY,
                        typed_config=pack(
                            tcp_proxy_pb2.TcpProxy(
                                stat_prefix=tcp_ports[port], cluster=tcp_ports[port]
                            )
                        ),
                    )
                ],
            )
        )
    manager = hcm_pb2.HttpConnectionManager(
        stat_prefix=xds.OUTBOUND_LISTENER,
        codec_type=hcm_pb2.HttpConnectionManager.AUTO,
        rds=hcm_pb2.Rds(config_source=ads_source(), route_config_name=xds.OUTBOUND_ROUTE),
        http_filters=[_router()],
    )
    stream_timeouts(manager, policy)
    chains.append(listener_components_pb2.FilterChain(name="http", filters=[_hcm_filter(manager)]))
    return listener_pb2.Listener(
        name=xds.OUTBOUND_LISTENER,
        address=_socket("0.0.0.0", ports.OUTBOUND_PORT),
        traffic_direction=base_pb2.OUTBOUND,
        filter_chains=chains,
    )


def inbound_listener(
    service: Service, policy: ServicePolicy, trust_domain: str
) -> listener_pb2.Listener:
    rules = rbac_rules(policy, trust_domain)
    transport = peer_tls.tls_socket(peer_tls.downstream_tls(trust_domain))
    chains = []
    for port in service.ports:
        stat = f"inbound_{port.port}"
        if port.protocol == "tcp":
            filters = [
                listener_components_pb2.Filter(
                    name=NETWORK_RBAC,
                    typed_config=pack(network_rbac_pb2.RBAC(rules=rules, stat_prefix=stat)),
                ),
                listener_components_pb2.Filter(
                    name=TCP_PROXY,
                    typed_config=pack(
                        tcp_proxy_pb2.TcpProxy(
                            stat_prefix=stat, cluster=xds.inbound_cluster(port.port)
                        )
                    ),
                ),
            ]
        else:
            manager = hcm_pb2.HttpConnectionManager(
                stat_prefix=stat,
                codec_type=hcm_pb2.HttpConnectionManager.AUTO,
                route_config=routes.inbound_route_config(port),
                http_filters=[
                    hcm_pb2.HttpFilter(
                        name=HTTP_RBAC, typed_config=pack(http_rbac_pb2.RBAC(rules=rules))
                    ),
                    _router(),
                ],
            )
            stream_timeouts(manager, policy)
            filters = [_hcm_filter(manager)]
        chains.append(
            listener_components_pb2.FilterChain(
                name=xds.inbound_cluster(port.port),
                filter_chain_match=listener_components_pb2.FilterChainMatch(
                    server_names=[xds.sni(trust_domain, service.key, port.port)],
                    transport_protocol="tls",
                ),
                transport_socket=transport,
                filters=filters,
            )
        )
    return listener_pb2.Listener(
        name=xds.INBOUND_LISTENER,
        address=_socket("0.0.0.0", ports.INBOUND_PORT),
        traffic_direction=base_pb2.INBOUND,
        listener_filters=[
            listener_components_pb2.ListenerFilter(
                name=TLS_INSPECTOR, typed_config=pack(tls_inspector_pb2.TlsInspector())
            )
        ],
        filter_chains=chains,
    )


def api_listener(
    name: str, service: Service, port: ServicePort, policy: ServicePolicy
) -> listener_pb2.Listener:
    """What gRPC's xDS resolver asks LDS for, with the routes inline."""
    key = service.key
    host = route_components_pb2.VirtualHost(
        name=f"{key.name}.{key.namespace}:{port.port}",
        domains=["*"],
        routes=[
            routes.default_route(routes.route_action(xds.outbound_cluster(key, port.port), policy))
        ],
    )
    manager = hcm_pb2.HttpConnectionManager(
        stat_prefix=name,
        codec_type=hcm_pb2.HttpConnectionManager.AUTO,
        route_config=route_pb2.RouteConfiguration(name=name, virtual_hosts=[host]),
        http_filters=[_router()],
    )
    return listener_pb2.Listener(
        name=name, api_listener=api_listener_pb2.ApiListener(api_listener=pack(manager))
    )
