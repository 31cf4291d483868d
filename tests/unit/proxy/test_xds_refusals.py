"""What the sidecar cannot honour is refused with a message naming the resource and why
(the xDS client sends it as the NACK's error_detail). Each case starts from the control
plane's real output and changes one thing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from envoy.type.matcher.v3 import regex_pb2
from google.protobuf import any_pb2

from gossamer.contract import xds
from gossamer.control.translate import NodeGroup
from gossamer.errors import ConfigError
from gossamer.proxy.xds import clusters as xds_clusters
from gossamer.proxy.xds import endpoints as xds_endpoints
from gossamer.proxy.xds import listeners as xds_listeners
from gossamer.proxy.xds import translate as xds_translate
from tests.helpers.xds_fixtures import TD, key, translator

CATALOG = "outbound|8080||catalog.default"


def resources(service: str = "catalog") -> dict[str, dict[str, Any]]:
    view = translator().view(NodeGroup(key(service)))
    out: dict[str, dict[str, Any]] = {}
    for type_url, by_name in view.items():
        out[type_url] = {}
        for name, message in by_name.items():
            copy = type(message)()
            copy.CopyFrom(message)
            out[type_url][name] = copy
    return out


def pack(messages: dict[str, Any]) -> list[any_pb2.Any]:
    out = []
    for m in messages.values():
        item = any_pb2.Any()
        item.Pack(m)
        out.append(item)
    return out


def refuses(type_url: str, change: Callable[[dict[str, Any]], None], match: str) -> None:
    view = resources("web") if type_url != xds.LISTENER else resources("catalog")
    change(view[type_url])
    decode: dict[str, Callable[[list[any_pb2.Any]], Any]] = {
        xds.CLUSTER: xds_clusters.decode_clusters,
        xds.ENDPOINT: xds_endpoints.decode_endpoints,
        xds.LISTENER: lambda rs: xds_listeners.decode_listeners(rs, TD),
        xds.ROUTE: xds_listeners.decode_routes,
        xds.SECRET: xds_translate.decode_secret,
    }
    with pytest.raises(ConfigError, match=match):
        decode[type_url](pack(view[type_url]))


def test_a_resource_of_another_type():
    with pytest.raises(ConfigError, match=r"expected envoy\.config\.cluster\.v3\.Cluster"):
        xds_clusters.decode_clusters(pack({"x": listener_pb2.Listener(name="x")}))


def test_dns_clusters():
    def change(cs: dict[str, Any]) -> None:
        cs[CATALOG].type = cluster_pb2.Cluster.STRICT_DNS

    refuses(xds.CLUSTER, change, r"catalog.default: discovery type STRICT_DNS")


def test_load_balancing_the_sidecar_does_not_implement():
    def change(cs: dict[str, Any]) -> None:
        policy = cs[CATALOG].load_balancing_policy.policies
        while len(policy):
            del policy[0]
        entry = policy.add()
        entry.typed_extension_config.name = "envoy.load_balancing_policies.maglev_custom"
        entry.typed_extension_config.typed_config.type_url = "type.googleapis.com/x.Custom"

    refuses(xds.CLUSTER, change, "no supported load-balancing policy among")

    def enum_change(cs: dict[str, Any]) -> None:
        cs[CATALOG].ClearField("load_balancing_policy")
        cs[CATALOG].lb_policy = cluster_pb2.Cluster.CLUSTER_PROVIDED

    refuses(xds.CLUSTER, enum_change, "lb_policy CLUSTER_PROVIDED is not supported")


def test_upstream_tls_without_a_spiffe_id_to_check():
    def change(cs: dict[str, Any]) -> None:
        match = cs[CATALOG].transport_socket_matches[0]
        context = tls_pb2.UpstreamTlsContext()
        match.transport_socket.typed_config.Unpack(context)
        sans = context.common_tls_context.combined_validation_context.default_validation_context
        del sans.match_typed_subject_alt_names[:]
        match.transport_socket.typed_config.Pack(context)

    refuses(xds.CLUSTER, change, "without an exact spiffe:// URI SAN")


def test_transport_socket_match_on_other_metadata():
    def change(cs: dict[str, Any]) -> None:
        cs[CATALOG].transport_socket_matches[0].match.update({"zone": "a"})

    refuses(xds.CLUSTER, change, "keys other than tlsMode")


def test_endpoint_without_address():
    def change(es: dict[str, Any]) -> None:
        cla: endpoint_pb2.ClusterLoadAssignment = es[CATALOG]
        cla.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address = ""

    refuses(xds.ENDPOINT, change, "endpoint without an address and port")


def test_regex_routes_header_matches_and_redirects():
    def regex(rs: dict[str, Any]) -> None:
        route = rs[xds.OUTBOUND_ROUTE].virtual_hosts[0].routes[0]
        route.match.safe_regex.CopyFrom(regex_pb2.RegexMatcher(regex="/a.*"))

    refuses(xds.ROUTE, regex, "path match safe_regex is not supported")

    def headers(rs: dict[str, Any]) -> None:
        route = rs[xds.OUTBOUND_ROUTE].virtual_hosts[0].routes[0]
        route.match.headers.add(name="x-canary")

    refuses(xds.ROUTE, headers, "header, query and runtime matches")

    def redirect(rs: dict[str, Any]) -> None:
        route = rs[xds.OUTBOUND_ROUTE].virtual_hosts[0].routes[0]
        route.redirect.host_redirect = "elsewhere"

    refuses(xds.ROUTE, redirect, "action redirect is not supported")


def test_unknown_retry_condition():
    def change(rs: dict[str, Any]) -> None:
        config: route_pb2.RouteConfiguration = rs[xds.OUTBOUND_ROUTE]
        for vh in config.virtual_hosts:
            if vh.name.startswith("catalog"):
                vh.routes[0].route.retry_policy.retry_on = "reset,envoy-ratelimited"

    refuses(xds.ROUTE, change, "retry condition 'envoy-ratelimited' is not supported")


def test_retry_conditions_of_http2_and_grpc():
    view = resources("web")
    config: route_pb2.RouteConfiguration = view[xds.ROUTE][xds.OUTBOUND_ROUTE]
    for vh in config.virtual_hosts:
        if vh.name.startswith("catalog"):
            vh.routes[0].route.retry_policy.retry_on = "refused-stream,unavailable"
            vh.routes[0].route.retry_policy.ClearField("retriable_status_codes")
    spec = xds_listeners.decode_routes(pack(view[xds.ROUTE]))[xds.OUTBOUND_ROUTE]
    (route,) = next(vh for vh in spec.table.virtual_hosts if vh.name.startswith("catalog")).routes
    assert route.retry is not None
    # a refused stream processed nothing (as a connect failure); UNAVAILABLE is 14
    assert route.retry.retry_on == {"connect-failure"}
    assert route.retry.retry_grpc_statuses == {14}
    assert not route.retry.retry_status_codes


def test_an_http_filter_the_sidecar_lacks():
    def change(ls: dict[str, Any]) -> None:
        listener: listener_pb2.Listener = ls[xds.OUTBOUND_LISTENER]
        chain = listener.filter_chains[-1]
        manager = hcm_pb2.HttpConnectionManager()
        chain.filters[0].typed_config.Unpack(manager)
        fault = manager.http_filters.add(name="envoy.filters.http.fault")
        fault.typed_config.type_url = (
            "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"
        )
        manager.http_filters.insert(0, fault)
        chain.filters[0].typed_config.Pack(manager)

    refuses(xds.LISTENER, change, "HTTP filter envoy.filters.http.fault is not supported")


def _inbound_rbac(ls: dict[str, Any], edit: Callable[[rbac_pb2.RBAC], None]) -> None:
    listener: listener_pb2.Listener = ls[xds.INBOUND_LISTENER]
    for chain in listener.filter_chains:
        manager = hcm_pb2.HttpConnectionManager()
        chain.filters[0].typed_config.Unpack(manager)
        for f in manager.http_filters:
            if f.name == "envoy.filters.http.rbac":
                rbac = http_rbac_pb2.RBAC()
                f.typed_config.Unpack(rbac)
                edit(rbac.rules)
                f.typed_config.Pack(rbac)
        chain.filters[0].typed_config.Pack(manager)


def test_deny_rbac_and_unsupported_principals():
    def deny(ls: dict[str, Any]) -> None:
        def edit(rules: rbac_pb2.RBAC) -> None:
            rules.action = rbac_pb2.RBAC.DENY

        _inbound_rbac(ls, edit)

    refuses(xds.LISTENER, deny, "RBAC action DENY is not supported")

    def by_ip(ls: dict[str, Any]) -> None:
        def edit(rules: rbac_pb2.RBAC) -> None:
            principal = rules.policies["allowed-callers"].principals.add()
            principal.direct_remote_ip.address_prefix = "10.0.0.0"

        _inbound_rbac(ls, edit)

    refuses(xds.LISTENER, by_ip, "principals must be authenticated SPIFFE IDs")


def test_inbound_without_client_certificates():
    def change(ls: dict[str, Any]) -> None:
        listener: listener_pb2.Listener = ls[xds.INBOUND_LISTENER]
        chain = listener.filter_chains[0]
        context = tls_pb2.DownstreamTlsContext()
        chain.transport_socket.typed_config.Unpack(context)
        context.require_client_certificate.value = False
        chain.transport_socket.typed_config.Pack(context)

    refuses(xds.LISTENER, change, "must require a client certificate")

    def plaintext(ls: dict[str, Any]) -> None:
        ls[xds.INBOUND_LISTENER].filter_chains[0].ClearField("transport_socket")

    refuses(xds.LISTENER, plaintext, "inbound traffic must be mutual TLS")


def test_unknown_listener_names():
    def change(ls: dict[str, Any]) -> None:
        ls["extra"] = listener_pb2.Listener(name="admin-9901")

    refuses(xds.LISTENER, change, "a sidecar has only the 'outbound' and 'inbound' listeners")


def test_secret_with_a_file_instead_of_inline_bytes():
    def change(ss: dict[str, Any]) -> None:
        trusted = ss[xds.ROOT_CA_SECRET].validation_context.trusted_ca
        trusted.filename = "/etc/ssl/ca.pem"

    refuses(xds.SECRET, change, "the trusted CA must be inline, not filename")


def test_empty_allow_list_denies_everyone():
    view = resources("catalog")

    def edit(rules: rbac_pb2.RBAC) -> None:
        rules.policies.clear()

    _inbound_rbac(view[xds.LISTENER], edit)
    decoded = xds_listeners.decode_listeners(pack(view[xds.LISTENER]), TD)
    assert decoded.inbound is not None
    authz = decoded.inbound.authorization
    assert not authz.allow_all_mesh and not authz.allows(f"spiffe://{TD}/ns/default/sa/web")
