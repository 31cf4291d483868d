"""A `ProxyConfig` from a YAML/JSON document, and back (for `/config_dump`).

For running a sidecar without a control plane (`gossamer proxy --static-config FILE`)
and for tests. An endpoint's `aliases` are its other addresses, taken as its own
unverified claims in transparent mode (pinned, never naming the cluster: see
`proxy/routing/router.py`); `primary` is the verified one when `address` is not it.
Errors name the field path and line. `dump_config` produces the same shape, so
`load_config(dump_config(c)) == c`. Example:

    node: {service: web, namespace: default, zone: zone-a}
    listeners: {mode: explicit}
    inbound:
      app_ports: [{port: 8080, protocol: http}]
      authorization: {allow_all_mesh: false, allowed: [spiffe://gossamer.local/ns/default/sa/web]}
    clusters:
      - name: outbound|8080||catalog
        service: catalog
        port: 8080
        identity: spiffe://gossamer.local/ns/default/sa/catalog
        lb_policy: least_request
        endpoints: [{address: 10.0.0.7, port: 15006, zone: zone-a}]
    routes:
      virtual_hosts:
        - name: catalog
          domains: [catalog, "catalog:8080"]
          routes:
            - name: catalog-default
              clusters: [{name: outbound|8080||catalog}]
              timeout: 5s
              retry: {attempts: 3, retry_on: [connect-failure, reset, 503], per_try_timeout: 1s}
"""

from __future__ import annotations

import enum
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gossamer.errors import ConfigError
from gossamer.proxy.config import (
    AppPort,
    Authorization,
    BreakerLimits,
    Cluster,
    Endpoint,
    Health,
    HealthCheck,
    InboundConfig,
    LbPolicy,
    ListenerMode,
    Listeners,
    NodeInfo,
    OutlierDetection,
    Protocol,
    ProxyConfig,
    RetryPolicy,
    Route,
    RouteTable,
    StreamTimeouts,
    VirtualHost,
    WeightedCluster,
)

if TYPE_CHECKING:  # (ruamel is loaded only to read a file: xDS-driven sidecars never do)
    from gossamer.yamlconf import Node


def _opt_duration(node: Node, key: str, default: float | None) -> float | None:
    child = node.child(key, default)
    if child.value is None:
        return None
    return child.duration()


def _stream_timeouts(n: Node) -> StreamTimeouts:
    """`{idle: 5m, request: 60s}` (absent keys: Envoy's defaults; 0 disables one)."""
    n.check_keys(["idle", "request"])
    default = StreamTimeouts()
    return StreamTimeouts(
        idle=n.child("idle", default.idle).duration(),
        request=n.child("request", default.request).duration(),
    )


def _node(n: Node) -> NodeInfo:
    n.check_keys(["service", "namespace", "zone", "node", "trust_domain"])
    return NodeInfo(
        service=n.child("service").string(),
        namespace=n.child("namespace", "default").string(),
        zone=n.child("zone", "").string(),
        node=n.child("node", "").string(),
        trust_domain=n.child("trust_domain", "gossamer.local").string(),
    )


def _listeners(n: Node) -> Listeners:
    n.check_keys(
        [
            "outbound_port",
            "inbound_port",
            "mode",
            "outbound_address",
            "inbound_address",
            "passthrough",
            "stream_timeouts",
        ]
    )
    return Listeners(
        outbound_port=n.child("outbound_port", 0).integer(minimum=0, maximum=65535),
        inbound_port=n.child("inbound_port", 0).integer(minimum=0, maximum=65535),
        mode=ListenerMode(n.child("mode", "explicit").choice([m.value for m in ListenerMode])),
        outbound_address=n.child("outbound_address", "127.0.0.1").string(),
        inbound_address=n.child("inbound_address", "0.0.0.0").string(),
        passthrough=n.child("passthrough", True).boolean(),
        stream_timeouts=_stream_timeouts(n.child("stream_timeouts", {})),
    )


def _inbound(n: Node) -> InboundConfig:
    n.check_keys(["app_ports", "authorization", "stream_timeouts"])
    ports = []
    for p in n.child("app_ports", []).items():
        p.check_keys(["port", "protocol", "address", "target_port"])
        ports.append(
            AppPort(
                port=p.child("port").integer(minimum=1, maximum=65535),
                protocol=Protocol(p.child("protocol", "http").choice([x.value for x in Protocol])),
                address=p.child("address", "127.0.0.1").string(),
                target_port=p.child("target_port", 0).integer(minimum=0, maximum=65535),
            )
        )
    a = n.child("authorization", {})
    a.check_keys(["allow_all_mesh", "allowed"])
    allowed = frozenset(a.child("allowed", []).string_list())
    authz = Authorization(
        allow_all_mesh=a.child("allow_all_mesh", not allowed).boolean(), allowed=allowed
    )
    return InboundConfig(
        app_ports=tuple(ports),
        authorization=authz,
        stream_timeouts=_stream_timeouts(n.child("stream_timeouts", {})),
    )


def _retry(n: Node) -> RetryPolicy:
    n.check_keys(
        [
            "attempts",
            "per_try_timeout",
            "retry_on",
            "retry_grpc_statuses",
            "retry_non_idempotent",
            "budget_percent",
            "min_retries_per_second",
            "backoff_base",
            "backoff_max",
        ]
    )
    conditions: set[str] = set()
    codes: set[int] = set()
    for item in n.child("retry_on", ["connect-failure", "reset", 502, 503, 504]).items():
        value = item.value
        if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
            codes.add(int(value))
        elif value == "gateway-error":
            codes |= {502, 503, 504}
        else:
            conditions.add(item.choice(["connect-failure", "reset", "gateway-error"]))
    values: dict[str, Any] = {
        "attempts": n.child("attempts", 3).integer(minimum=1, maximum=10),
        "per_try_timeout": _opt_duration(n, "per_try_timeout", None),
        "retry_on": frozenset(conditions),
        "retry_status_codes": frozenset(codes),
        "retry_grpc_statuses": frozenset(
            i.integer(minimum=0, maximum=16) for i in n.child("retry_grpc_statuses", []).items()
        ),
        "retry_non_idempotent": n.child("retry_non_idempotent", False).boolean(),
        "budget_percent": n.child("budget_percent", 20.0).number(minimum=0, maximum=1000),
        "min_retries_per_second": n.child("min_retries_per_second", 10.0).number(minimum=0),
        "backoff_base": n.child("backoff_base", 0.025).duration(),
        "backoff_max": n.child("backoff_max", 0.25).duration(),
    }
    try:
        return RetryPolicy(**values)
    except ConfigError as exc:
        raise n.error(exc.detail, hint=exc.hint) from None


def _routes(n: Node) -> RouteTable:
    n.check_keys(["name", "virtual_hosts", "validate_clusters"])
    vhosts = []
    for vh in n.child("virtual_hosts", []).items():
        vh.check_keys(["name", "domains", "routes"])
        routes = []
        for r in vh.child("routes").items():
            r.check_keys(["name", "prefix", "clusters", "timeout", "retry", "idle_timeout"])
            clusters = []
            for c in r.child("clusters").items():
                c.check_keys(["name", "weight"])
                clusters.append(
                    WeightedCluster(
                        c.child("name").string(), c.child("weight", 1).integer(minimum=1)
                    )
                )
            retry = r.child("retry", None)
            routes.append(
                Route(
                    name=r.child("name").string(),
                    clusters=tuple(clusters),
                    prefix=r.child("prefix", "/").string(),
                    timeout=_opt_duration(r, "timeout", 15.0),
                    retry=None if retry.value is None else _retry(retry),
                    idle_timeout=_opt_duration(r, "idle_timeout", None),
                )
            )
        vhosts.append(
            VirtualHost(
                vh.child("name").string(), tuple(vh.child("domains").string_list()), tuple(routes)
            )
        )
    return RouteTable(
        n.child("name", "outbound").string(),
        tuple(vhosts),
        validate_clusters=n.child("validate_clusters", True).boolean(),
    )


_OUTLIER_INTS = {  # field -> (default, maximum)
    "consecutive_failures": (5, None),
    "consecutive_5xx": (0, None),
    "enforcing_consecutive_5xx": (100, 100),
    "enforcing_consecutive_gateway": (100, 100),
    "max_ejection_percent": (50, 100),
    "success_rate_minimum_hosts": (5, None),
    "success_rate_request_volume": (100, None),
    "success_rate_stdev_factor": (1900, None),
    "enforcing_success_rate": (0, 100),
}


def _outlier(n: Node) -> OutlierDetection:
    n.check_keys([*_OUTLIER_INTS, "base_ejection", "max_ejection", "interval"])
    ints = {
        k: n.child(k, default).integer(minimum=0, maximum=top)
        for k, (default, top) in _OUTLIER_INTS.items()
    }
    interval = n.child("interval", 10.0).duration()
    if interval <= 0:
        raise n.child("interval").error("must be more than 0")
    return OutlierDetection(
        base_ejection=n.child("base_ejection", 5.0).duration(),
        max_ejection=n.child("max_ejection", 60.0).duration(),
        interval=interval,
        **ints,
    )


def _optional_limit(n: Node, key: str) -> int | None:
    child = n.child(key, None)
    return None if child.value is None else child.integer(minimum=0)


def _breaker(n: Node) -> BreakerLimits:
    keys = ["max_connections", "max_pending_requests", "max_requests", "max_retries"]
    n.check_keys(keys)
    return BreakerLimits(*(_optional_limit(n, k) for k in keys))


def _health_check(n: Node) -> HealthCheck | None:
    if n.value is None:
        return None
    n.check_keys(
        ["http_path", "interval", "timeout", "unhealthy_threshold", "healthy_threshold",
         "expected_statuses", "host"]
    )  # fmt: skip
    statuses = tuple(
        (s.child("start").integer(minimum=100), s.child("end").integer(minimum=101))
        if isinstance(s.value, dict)
        else (s.integer(minimum=100, maximum=599), s.integer() + 1)
        for s in n.child("expected_statuses", [200]).items()
    )
    return HealthCheck(
        http_path=n.child("http_path", None).optional_string(),
        interval=n.child("interval", 5.0).duration(),
        timeout=n.child("timeout", 1.0).duration(),
        unhealthy_threshold=n.child("unhealthy_threshold", 3).integer(minimum=1),
        healthy_threshold=n.child("healthy_threshold", 2).integer(minimum=1),
        expected_statuses=statuses,
        host=n.child("host", "").string(),
    )


def _cluster(c: Node) -> tuple[Cluster, tuple[Endpoint, ...]]:
    c.check_keys(
        [
            "name",
            "service",
            "namespace",
            "port",
            "protocol",
            "tls",
            "identity",
            "sni",
            "lb_policy",
            "hash_header",
            "connect_timeout",
            "max_idle_per_endpoint",
            "idle_timeout",
            "endpoints",
            "outlier",
            "panic_threshold",
            "breaker",
            "health_check",
        ]
    )
    endpoints = []
    for e in c.child("endpoints", []).items():
        e.check_keys(
            [
                "address",
                "port",
                "zone",
                "node",
                "weight",
                "health",
                "tls",
                "priority",
                "aliases",
                "primary",
            ]
        )
        endpoints.append(
            Endpoint(
                address=e.child("address").string(),
                port=e.child("port").integer(minimum=1, maximum=65535),
                zone=e.child("zone", "").string(),
                node=e.child("node", "").string(),
                weight=e.child("weight", 1).integer(minimum=1, maximum=128),
                health=Health(e.child("health", "healthy").choice([h.value for h in Health])),
                tls=e.child("tls", True).boolean(),
                priority=e.child("priority", 0).integer(minimum=0, maximum=128),
                aliases=tuple(e.child("aliases", []).string_list()),
                primary=e.child("primary", "").string(),
            )
        )
    values: dict[str, Any] = {
        "name": c.child("name").string(),
        "service": c.child("service").string(),
        "namespace": c.child("namespace", "default").string(),
        "port": c.child("port").integer(minimum=1, maximum=65535),
        "protocol": Protocol(c.child("protocol", "http").choice([p.value for p in Protocol])),
        "tls": c.child("tls", True).boolean(),
        "identity": c.child("identity", None).optional_string(),
        "sni": c.child("sni", None).optional_string(),
        "lb_policy": LbPolicy(
            c.child("lb_policy", "round_robin").choice([p.value for p in LbPolicy])
        ),
        "hash_header": c.child("hash_header", None).optional_string(),
        "connect_timeout": c.child("connect_timeout", 1.0).duration(),
        "max_idle_per_endpoint": c.child("max_idle_per_endpoint", 64).integer(minimum=0),
        "idle_timeout": c.child("idle_timeout", 60.0).duration(),
        "outlier": _outlier(c.child("outlier", {})),
        "panic_threshold": c.child("panic_threshold", 0.0).number(minimum=0.0, maximum=100.0),
        "breaker": _breaker(c.child("breaker", {})),
        "health_check": _health_check(c.child("health_check", None)),
    }
    try:
        cluster = Cluster(**values)
    except ConfigError as exc:
        raise c.error(exc.detail, hint=exc.hint) from None
    return cluster, tuple(endpoints)


def load_config(root: Node, default_node: NodeInfo | None = None) -> ProxyConfig:
    """Build and validate a ProxyConfig from a loaded document (`node` may be left out
    when `default_node` is given)."""
    root.check_keys(["node", "listeners", "inbound", "clusters", "routes", "versions"])
    clusters: dict[str, Cluster] = {}
    endpoints: dict[str, tuple[Endpoint, ...]] = {}
    for c in root.child("clusters", []).items():
        cluster, eps = _cluster(c)
        if cluster.name in clusters:
            raise c.error(f"duplicate cluster {cluster.name!r}")
        clusters[cluster.name] = cluster
        endpoints[cluster.name] = eps
    versions = {k: str(v.value) for k, v in root.child("versions", {}).entries()}
    try:
        return ProxyConfig(
            node=default_node
            if default_node is not None and not root.has("node")
            else _node(root.child("node")),
            listeners=_listeners(root.child("listeners", {})),
            inbound=_inbound(root.child("inbound", {})),
            routes=_routes(root.child("routes", {})),
            clusters=clusters,
            endpoints=endpoints,
            versions=versions or {"static": "1"},
        )
    except ConfigError as exc:
        if exc.source is None and root.source is not None:
            raise ConfigError(
                exc.detail, field=exc.field, source=root.source, hint=exc.hint
            ) from None
        raise


def load_config_text(
    text: str, source: str | None = None, default_node: NodeInfo | None = None
) -> ProxyConfig:
    from gossamer.yamlconf import load_document

    return load_config(load_document(text, source=source), default_node)


def load_config_file(path: str | Path, default_node: NodeInfo | None = None) -> ProxyConfig:
    from gossamer.yamlconf import load_file

    return load_config(load_file(path), default_node)


def to_plain(value: Any) -> Any:
    """Dataclasses, enums, sets and mappings as JSON-ready values."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, frozenset | set):
        return sorted(to_plain(v) for v in value)
    if isinstance(value, tuple | list):
        return [to_plain(v) for v in value]
    if hasattr(value, "items"):
        return {str(k): to_plain(v) for k, v in value.items()}
    return value


def dump_config(config: ProxyConfig) -> dict[str, Any]:
    """The document `load_config` reads (endpoints nested in their clusters)."""
    clusters = []
    for name, cluster in config.clusters.items():
        entry = to_plain(cluster)
        entry["endpoints"] = to_plain(config.endpoints.get(name, ()))
        clusters.append(entry)
    routes = to_plain(config.routes)
    for vh in routes["virtual_hosts"]:
        for route in vh["routes"]:
            retry = route.get("retry")
            if retry is not None:
                retry["retry_on"] = retry["retry_on"] + retry.pop("retry_status_codes")
    return {
        "node": to_plain(config.node),
        "listeners": to_plain(config.listeners),
        "inbound": to_plain(config.inbound),
        "clusters": clusters,
        "routes": routes,
        "versions": dict(config.versions),
    }
