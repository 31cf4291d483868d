from __future__ import annotations

from envoy.config.listener.v3 import listener_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from gossamer.contract import ports, xds
from gossamer.contract.identity import ServiceKey
from gossamer.control.config import mesh_from_mapping
from gossamer.control.policy import ServicePolicy
from gossamer.control.translate import listeners
from gossamer.control.translate.references import listener_routes, listener_secrets
from gossamer.discovery.model import Service, ServicePort

TD = "gossamer.local"
SVC = Service("catalog", ports=(ServicePort(8080), ServicePort(5432, "tcp")))


def hcm(filter_) -> hcm_pb2.HttpConnectionManager:
    manager = hcm_pb2.HttpConnectionManager()
    assert filter_.typed_config.Unpack(manager)
    return manager


def test_outbound_listener():
    listener = listeners.outbound_listener({5432: "outbound|5432||db.default"})
    assert listener.name == "outbound"
    assert listener.address.socket_address.port_value == ports.OUTBOUND_PORT
    tcp, http = listener.filter_chains
    assert tcp.filter_chain_match.destination_port.value == 5432
    proxy = tcp_proxy_pb2.TcpProxy()
    assert (
        tcp.filters[0].typed_config.Unpack(proxy) and proxy.cluster == "outbound|5432||db.default"
    )
    manager = hcm(http.filters[0])
    assert (
        manager.rds.route_config_name == xds.OUTBOUND_ROUTE
        and manager.rds.config_source.HasField("ads")
    )
    router = router_pb2.Router()
    assert manager.http_filters[-1].typed_config.Unpack(router)
    assert listener_routes(listener) == {xds.OUTBOUND_ROUTE}


def test_inbound_listener_requires_mesh_client_certificates_and_applies_rbac():
    policy = mesh_from_mapping(
        {
            "services": [
                {
                    "name": "catalog",
                    "authorization": {"allow": [f"spiffe://{TD}/ns/default/sa/web"]},
                }
            ]
        }
    ).policy_for(ServiceKey("default", "catalog"))
    listener = listeners.inbound_listener(SVC, policy, TD)
    assert (
        listener.name == "inbound"
        and listener.address.socket_address.port_value == ports.INBOUND_PORT
    )
    assert listener.listener_filters[0].name == listeners.TLS_INSPECTOR
    http, tcp = listener.filter_chains
    assert list(http.filter_chain_match.server_names) == [xds.sni(TD, SVC.key, 8080)]
    context = tls_pb2.DownstreamTlsContext()
    assert http.transport_socket.typed_config.Unpack(context)
    assert context.require_client_certificate.value
    [san] = (
        context.common_tls_context.combined_validation_context.default_validation_context.match_typed_subject_alt_names
    )
    assert san.matcher.prefix == f"spiffe://{TD}/"
    assert listener_secrets(listener) == {xds.ROOT_CA_SECRET}
    manager = hcm(http.filters[0])
    assert [f.name for f in manager.http_filters] == [listeners.HTTP_RBAC, listeners.ROUTER]
    rbac = http_rbac_pb2.RBAC()
    assert manager.http_filters[0].typed_config.Unpack(rbac)
    [principal] = rbac.rules.policies[listeners.ALLOWED_CALLERS].principals
    assert principal.authenticated.principal_name.exact == f"spiffe://{TD}/ns/default/sa/web"
    assert manager.route_config.virtual_hosts[0].routes[0].route.cluster == "inbound|8080"
    assert [f.name for f in tcp.filters] == [listeners.NETWORK_RBAC, listeners.TCP_PROXY]
    network = network_rbac_pb2.RBAC()
    assert tcp.filters[0].typed_config.Unpack(network) and network.rules == rbac.rules


def test_rbac_without_authorization_allows_any_mesh_identity_and_empty_allow_denies_all():
    open_rules = listeners.rbac_rules(ServicePolicy(), TD)
    [principal] = open_rules.policies[listeners.ALLOWED_CALLERS].principals
    assert principal.authenticated.principal_name.prefix == f"spiffe://{TD}/"
    closed = mesh_from_mapping({"services": [{"name": "x", "authorization": {"allow": []}}]})
    rules = listeners.rbac_rules(closed.policy_for(ServiceKey("default", "x")), TD)
    assert rules.action == rbac_pb2.RBAC.ALLOW and len(rules.policies) == 0


def test_api_listener_is_what_grpc_accepts():
    listener = listeners.api_listener("catalog:8080", SVC, SVC.ports[0], ServicePolicy(timeout=2))
    assert isinstance(listener, listener_pb2.Listener)
    manager = hcm_pb2.HttpConnectionManager()
    assert listener.api_listener.api_listener.Unpack(manager)
    assert [f.name for f in manager.http_filters] == [listeners.ROUTER]
    assert manager.http_filters[0].HasField("typed_config")
    [host] = manager.route_config.virtual_hosts
    assert list(host.domains) == ["*"]
    assert host.routes[0].route.cluster == "outbound|8080||catalog.default"
    assert host.routes[0].route.timeout.seconds == 2
    assert listener_routes(listener) == set()  # inline: no RDS
