"""LDS and RDS for the sidecar: Envoy Listener and RouteConfiguration -> typed specs.

Pure functions; what the sidecar cannot honour raises ConfigError (a NACK). The control
plane's side is control/translate/listeners.py and routes.py.

- Listener `outbound`: its HttpConnectionManager names the RDS route configuration (or
  carries one inline). HTTP filters other than the router (and RBAC) are refused unless
  marked optional. TCP filter chains (matched on the original destination port) need
  nothing here: TCP clusters are found by endpoint address and port (router.py).
- Listener `inbound`: one filter chain per port of the sidecar's own service, selected
  by the SNI the caller sends (`outbound_.<port>_...`); each must require mutual TLS.
  A chain with tcp_proxy is a TCP port, one with an HttpConnectionManager an HTTP port.
  The RBAC rules (network or HTTP filter) become the `Authorization`: ALLOW policies
  whose permissions are `any` and whose principals are authenticated SPIFFE IDs (exact,
  or a prefix: the trust domain's own prefix means every mesh identity). Every chain
  must carry the same rules (the sidecar has one authorization for all its ports).
- Stream timeouts: each HttpConnectionManager's `stream_idle_timeout` (absent: Envoy's
  5 minutes) and `request_timeout` (absent: none); 0 turns one off. The outbound one
  applies to the app's requests, the inbound ones (which must agree) to peers'.
- RouteConfiguration: virtual hosts and prefix routes to one or weighted clusters;
  timeout (absent: Envoy's 15 s; 0: none); `idle_timeout` (replaces the listener's
  stream idle timeout for the route's requests; 0: none); retry policy (`num_retries + 1` attempts,
  `retry_on` conditions mapped below, per-try timeout, back-off); the header of a hash
  policy, for ring-hash clusters. The `*` virtual host to PassthroughCluster becomes
  "pass unknown destinations through".

Retry conditions: connect-failure; reset and reset-before-request -> reset; 5xx ->
connect-failure, reset and every 5xx status; gateway-error -> connect-failure and
502/503/504; retriable-4xx -> 409; retriable-status-codes -> the listed codes.
refused-stream (HTTP/2: a stream the upstream refused or a GOAWAY left unstarted, so
nothing was processed) -> connect-failure; the gRPC conditions (cancelled,
deadline-exceeded, internal, resource-exhausted, unavailable) -> those gRPC statuses of
trailers-only answers; anything else is refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from envoy.config.listener.v3 import listener_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from google.protobuf import any_pb2

from gossamer.contract import xds
from gossamer.contract.vocabulary import GRPC_RETRY_CODES, GrpcRetryOn
from gossamer.errors import ConfigError
from gossamer.proxy.config import (
    Authorization,
    Protocol,
    RetryPolicy,
    Route,
    RouteTable,
    StreamTimeouts,
    VirtualHost,
    WeightedCluster,
)
from gossamer.proxy.transport.tls_contexts import port_from_sni
from gossamer.proxy.xds.endpoints import enum_name, seconds, unpack

_P = "type.googleapis.com/envoy.extensions."
HCM_TYPE = _P + "filters.network.http_connection_manager.v3.HttpConnectionManager"
TCP_PROXY_TYPE = _P + "filters.network.tcp_proxy.v3.TcpProxy"
NETWORK_RBAC_TYPE = _P + "filters.network.rbac.v3.RBAC"
HTTP_RBAC_TYPE = _P + "filters.http.rbac.v3.RBAC"
ROUTER_TYPE = _P + "filters.http.router.v3.Router"
DOWNSTREAM_TLS_TYPE = _P + "transport_sockets.tls.v3.DownstreamTlsContext"
LISTENER_FILTERS = frozenset(
    {
        _P + "filters.listener.tls_inspector.v3.TlsInspector",
        _P + "filters.listener.original_dst.v3.OriginalDst",
        _P + "filters.listener.http_inspector.v3.HttpInspector",
    }
)
DEFAULT_ROUTE_TIMEOUT = 15.0
DEFAULT_STREAM_TIMEOUTS = StreamTimeouts()  # Envoy's, for an HCM without the fields
MAX_ATTEMPTS = 11


@dataclass(frozen=True)
class RouteSpec:
    """A decoded RouteConfiguration (retry policies still without their budget)."""

    table: RouteTable
    hash_headers: Mapping[str, str] = field(default_factory=dict)  # cluster -> header
    passthrough: bool = False


@dataclass(frozen=True)
class InboundSpec:
    ports: tuple[tuple[int, Protocol], ...] = ()  # service port and its protocol
    authorization: Authorization = field(default_factory=Authorization)
    stream_timeouts: StreamTimeouts = DEFAULT_STREAM_TIMEOUTS


@dataclass(frozen=True)
class ListenerSet:
    """A decoded LDS update."""

    route_config: str | None = None  # the RDS name of the outbound HTTP routes
    inline_routes: RouteSpec | None = None
    inbound: InboundSpec | None = None
    outbound_timeouts: StreamTimeouts = DEFAULT_STREAM_TIMEOUTS

    @property
    def rds_names(self) -> tuple[str, ...]:
        return (self.route_config,) if self.route_config else ()


# -- listeners ---------------------------------------------------------------------
def decode_listeners(resources: Sequence[any_pb2.Any], trust_domain: str) -> ListenerSet:
    route_config: str | None = None
    inline: RouteSpec | None = None
    inbound: InboundSpec | None = None
    timeouts = DEFAULT_STREAM_TIMEOUTS
    for packed in resources:
        listener = unpack(packed, listener_pb2.Listener(), "LDS resource")
        if listener.HasField("api_listener"):
            continue  # for proxyless gRPC clients
        for lf in listener.listener_filters:
            # (a ListenerFilter has no is_optional, unlike an HttpFilter: an unknown one
            # is refused)
            if lf.typed_config.type_url not in LISTENER_FILTERS:
                raise ConfigError(f"listener {listener.name}: listener filter {lf.name} unknown")
        if listener.name == xds.OUTBOUND_LISTENER:
            route_config, inline, timeouts = _outbound(listener)
        elif listener.name == xds.INBOUND_LISTENER:
            inbound = _inbound(listener, trust_domain)
        else:
            raise ConfigError(
                f"listener {listener.name!r}: a sidecar has only the "
                f"{xds.OUTBOUND_LISTENER!r} and {xds.INBOUND_LISTENER!r} listeners"
            )
    return ListenerSet(route_config, inline, inbound, timeouts)


def _manager(packed: any_pb2.Any, where: str) -> hcm_pb2.HttpConnectionManager:
    manager = unpack(packed, hcm_pb2.HttpConnectionManager(), where)
    for f in manager.http_filters:
        kind = f.typed_config.type_url
        if kind not in (ROUTER_TYPE, HTTP_RBAC_TYPE) and not f.is_optional:
            raise ConfigError(
                f"{where}: HTTP filter {f.name or kind} is not supported",
                hint="the sidecar implements the router and RBAC filters",
            )
    return manager


def stream_timeouts(manager: hcm_pb2.HttpConnectionManager, where: str) -> StreamTimeouts:
    """An HttpConnectionManager's `stream_idle_timeout` and `request_timeout`."""
    idle = DEFAULT_STREAM_TIMEOUTS.idle
    if manager.HasField("stream_idle_timeout"):
        idle = seconds(manager.stream_idle_timeout)
    request = seconds(manager.request_timeout) if manager.HasField("request_timeout") else 0.0
    try:
        return StreamTimeouts(idle, request)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc.message}") from None


def _outbound(
    listener: listener_pb2.Listener,
) -> tuple[str | None, RouteSpec | None, StreamTimeouts]:
    where = f"listener {listener.name}"
    found: tuple[str | None, RouteSpec | None, StreamTimeouts] | None = None
    for chain in listener.filter_chains:
        for f in chain.filters:
            kind = f.typed_config.type_url
            if kind in (TCP_PROXY_TYPE, NETWORK_RBAC_TYPE):
                continue
            if kind != HCM_TYPE:
                raise ConfigError(f"{where}: network filter {f.name or kind} is not supported")
            manager = _manager(f.typed_config, where)
            spec = manager.WhichOneof("route_specifier")
            timeouts = stream_timeouts(manager, where)
            if spec == "rds":
                found = (manager.rds.route_config_name, None, timeouts)
            elif spec == "route_config":
                found = (None, decode_route_config(manager.route_config), timeouts)
            else:
                raise ConfigError(f"{where}: routes by {spec} are not supported (RDS or inline)")
    if found is None:
        raise ConfigError(f"{where}: no HTTP connection manager")
    return found


def _inbound(listener: listener_pb2.Listener, trust_domain: str) -> InboundSpec:
    ports: list[tuple[int, Protocol]] = []
    rules: list[Authorization] = []
    timeouts: set[StreamTimeouts] = set()
    for chain in listener.filter_chains:
        where = f"listener {listener.name}, chain {chain.name or len(ports)}"
        port = None
        for server_name in chain.filter_chain_match.server_names:
            port = port_from_sni(server_name) or port
        if port is None and chain.name.startswith("inbound|"):
            suffix = chain.name.removeprefix("inbound|")
            port = int(suffix) if suffix.isascii() and suffix.isdigit() else None
            port = port or None
        if port is None:
            raise ConfigError(f"{where}: no SNI of the form outbound_.<port>_... to serve")
        _require_mtls(chain, where)
        protocol: Protocol | None = None
        authz = Authorization()
        for f in chain.filters:
            kind = f.typed_config.type_url
            if kind == NETWORK_RBAC_TYPE:
                net = unpack(f.typed_config, network_rbac_pb2.RBAC(), where)
                authz = authorization(net.rules, trust_domain, where)
            elif kind == TCP_PROXY_TYPE:
                protocol = Protocol.TCP
            elif kind == HCM_TYPE:
                protocol = Protocol.HTTP
                manager = _manager(f.typed_config, where)
                timeouts.add(stream_timeouts(manager, where))
                for hf in manager.http_filters:
                    if hf.typed_config.type_url == HTTP_RBAC_TYPE:
                        http = unpack(hf.typed_config, http_rbac_pb2.RBAC(), where)
                        authz = authorization(http.rules, trust_domain, where)
            else:
                raise ConfigError(f"{where}: network filter {f.name or kind} is not supported")
        if protocol is None:
            raise ConfigError(f"{where}: neither tcp_proxy nor an HTTP connection manager")
        ports.append((port, protocol))
        rules.append(authz)
    if any(r != rules[0] for r in rules):
        raise ConfigError(
            f"listener {listener.name}: the ports carry different authorization rules; "
            "the sidecar applies one authorization to all of its service's ports"
        )
    if len(timeouts) > 1:
        raise ConfigError(
            f"listener {listener.name}: the ports carry different stream timeouts; the "
            "sidecar applies one stream_idle_timeout and request_timeout to all of them"
        )
    return InboundSpec(
        tuple(ports),
        rules[0] if rules else Authorization(),
        timeouts.pop() if timeouts else DEFAULT_STREAM_TIMEOUTS,
    )


def _require_mtls(chain: listener_pb2.FilterChain, where: str) -> None:
    typed = chain.transport_socket.typed_config
    if typed.type_url != DOWNSTREAM_TLS_TYPE:
        raise ConfigError(f"{where}: inbound traffic must be mutual TLS")
    context = unpack(typed, tls_pb2.DownstreamTlsContext(), where)
    if not context.require_client_certificate.value:
        raise ConfigError(f"{where}: inbound TLS must require a client certificate")


def authorization(rules: rbac_pb2.RBAC, trust_domain: str, where: str) -> Authorization:
    """ALLOW rules of authenticated SPIFFE IDs -> Authorization (see the docstring)."""
    if rules.action != rbac_pb2.RBAC.ALLOW:
        action = enum_name(rbac_pb2.RBAC.Action, rules.action)
        raise ConfigError(f"{where}: RBAC action {action} is not supported (ALLOW only)")
    allowed: set[str] = set()
    mesh = f"spiffe://{trust_domain}/"
    for name, policy in rules.policies.items():
        if any(not p.any for p in policy.permissions) or not policy.permissions:
            raise ConfigError(f"{where}: RBAC policy {name}: only `any` permissions are supported")
        for principal in policy.principals:
            if principal.any:
                return Authorization(allow_all_mesh=True)
            if principal.WhichOneof("identifier") != "authenticated":
                raise ConfigError(
                    f"{where}: RBAC policy {name}: principals must be authenticated SPIFFE IDs"
                )
            matcher = principal.authenticated.principal_name
            kind = matcher.WhichOneof("match_pattern")
            if kind == "exact":
                allowed.add(matcher.exact)
            elif kind == "prefix" and matcher.prefix == mesh:
                return Authorization(allow_all_mesh=True)
            elif kind == "prefix" and matcher.prefix.startswith("spiffe://"):
                allowed.add(matcher.prefix + "*")
            else:
                raise ConfigError(
                    f"{where}: RBAC policy {name}: principal matcher {kind} is not supported"
                )
    return Authorization(allow_all_mesh=False, allowed=frozenset(allowed))


# -- routes ------------------------------------------------------------------------
def decode_routes(resources: Sequence[any_pb2.Any]) -> dict[str, RouteSpec]:
    out: dict[str, RouteSpec] = {}
    for packed in resources:
        config = unpack(packed, route_pb2.RouteConfiguration(), "RDS resource")
        out[config.name] = decode_route_config(config)
    return out


def decode_route_config(config: route_pb2.RouteConfiguration) -> RouteSpec:
    hosts: list[VirtualHost] = []
    hash_headers: dict[str, str] = {}
    passthrough = False
    for vh in config.virtual_hosts:
        routes = []
        for index, r in enumerate(vh.routes):
            where = f"route configuration {config.name}, virtual host {vh.name}"
            route, header = _route(r, f"{vh.name}/{r.name or index}", where)
            if len(route.clusters) == 1 and route.clusters[0].name == xds.PASSTHROUGH_CLUSTER:
                passthrough = True
                continue
            if header:
                for wc in route.clusters:
                    hash_headers.setdefault(wc.name, header)
            routes.append(route)
        if routes:
            hosts.append(VirtualHost(vh.name, tuple(d.lower() for d in vh.domains), tuple(routes)))
    validate = config.validate_clusters.value if config.HasField("validate_clusters") else False
    table = RouteTable(config.name, tuple(hosts), validate_clusters=validate)
    return RouteSpec(table, hash_headers, passthrough)


def _route(r: route_components_pb2.Route, name: str, where: str) -> tuple[Route, str]:
    where = f"{where}, route {name}"
    match = r.match
    if match.WhichOneof("path_specifier") not in (None, "prefix"):
        kind = match.WhichOneof("path_specifier")
        raise ConfigError(f"{where}: path match {kind} is not supported (prefix only)")
    if match.headers or match.query_parameters or match.HasField("runtime_fraction"):
        raise ConfigError(f"{where}: header, query and runtime matches are not supported")
    if r.WhichOneof("action") != "route":
        raise ConfigError(f"{where}: action {r.WhichOneof('action')} is not supported")
    action = r.route
    kind = action.WhichOneof("cluster_specifier")
    if kind == "cluster":
        clusters: tuple[WeightedCluster, ...] = (WeightedCluster(action.cluster),)
    elif kind == "weighted_clusters":
        clusters = tuple(
            WeightedCluster(c.name, c.weight.value if c.HasField("weight") else 1)
            for c in action.weighted_clusters.clusters
            if not c.HasField("weight") or c.weight.value > 0
        )
    else:
        raise ConfigError(f"{where}: cluster by {kind} is not supported")
    timeout: float | None = DEFAULT_ROUTE_TIMEOUT
    if action.HasField("timeout"):
        timeout = seconds(action.timeout) or None
    idle: float | None = seconds(action.idle_timeout) if action.HasField("idle_timeout") else None
    if idle is not None and idle < 0:
        raise ConfigError(f"{where}: idle_timeout must not be negative")
    retry = retry_policy(action.retry_policy, where) if action.HasField("retry_policy") else None
    header = ""
    for hp in action.hash_policy:
        if hp.HasField("header"):
            header = hp.header.header_name.lower()
            break
    try:
        route = Route(name, clusters, match.prefix or "/", timeout, retry, idle)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc.message}") from None
    return route, header


def retry_policy(policy: route_components_pb2.RetryPolicy, where: str) -> RetryPolicy | None:
    conditions: set[str] = set()
    codes: set[int] = set()
    grpc_codes: set[int] = set()
    for token in filter(None, (t.strip() for t in policy.retry_on.split(","))):
        if token in ("connect-failure", "reset"):
            conditions.add(token)
        elif token == "reset-before-request":
            conditions.add("reset")
        elif token == "5xx":
            conditions |= {"connect-failure", "reset"}
            codes |= set(range(500, 600))
        elif token == "gateway-error":
            conditions.add("connect-failure")
            codes |= {502, 503, 504}
        elif token == "retriable-4xx":
            codes.add(409)
        elif token == "retriable-status-codes":
            codes |= set(policy.retriable_status_codes)
        elif token == "refused-stream":
            conditions.add("connect-failure")
        elif token in GRPC_RETRY_CODES:
            grpc_codes.add(GRPC_RETRY_CODES[GrpcRetryOn(token)])
        else:
            raise ConfigError(f"{where}: retry condition {token!r} is not supported")
    if not conditions and not codes and not grpc_codes:
        return None
    retries = policy.num_retries.value if policy.HasField("num_retries") else 1
    base, top = 0.025, 0.25
    if policy.HasField("retry_back_off"):
        backoff = policy.retry_back_off
        base = seconds(backoff.base_interval) or base
        top = seconds(backoff.max_interval) if backoff.HasField("max_interval") else 10 * base
    per_try = seconds(policy.per_try_timeout) if policy.HasField("per_try_timeout") else 0.0
    try:
        return RetryPolicy(
            attempts=min(retries + 1, MAX_ATTEMPTS),
            per_try_timeout=per_try or None,
            retry_on=frozenset(conditions),
            retry_status_codes=frozenset(codes),
            retry_grpc_statuses=frozenset(grpc_codes),
            backoff_base=base,
            backoff_max=max(top, base),
        )
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc.message}") from None
