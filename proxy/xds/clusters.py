"""CDS and EDS for the sidecar: Envoy Cluster and ClusterLoadAssignment -> typed specs.

Pure functions; a resource the sidecar cannot honour raises ConfigError (the xDS client
NACKs it). What each Cluster field becomes (the control plane's side is
control/translate/clusters.py):

- `outbound|<port>||<svc>.<ns>` (EDS): a `ClusterSpec`. Service, namespace, port and
  protocol come from the `gossamer` filter metadata (else from the name). Load
  balancing: the `lb_policy` enum, or the first entry of `load_balancing_policy` the
  sidecar implements (the `gossamer.lb.peak_ewma` marker, least-request, random, round
  robin, ring hash; wrr_locality is looked through: the sidecar balances zones itself).
  Ring hash takes its header from the routes' hash policy (assembled later); without
  one Envoy hashes randomly, so the sidecar picks at random. Upstream TLS: a
  `transport_socket_matches` entry whose criterion is `tlsMode: <value>` selects mutual
  TLS for endpoints carrying that metadata (others plaintext); a plain `transport_socket`
  means TLS for every endpoint. The peer's SPIFFE ID is the exact URI SAN matcher and
  the SNI is the context's `sni`. Outlier detection maps field for field with Envoy's
  defaults (consecutive 5xx and gateway failures with their enforcing percentages,
  success rate, interval, base/max ejection time, max_ejection_percent; absent: off,
  as in Envoy); the panic threshold maps as is (Envoy's default 50%). Circuit
  breakers: the default priority's max_connections, max_pending_requests,
  max_requests, max_retries (proxy/upstream/breaker.py); the retry budget percent goes to the
  routes' retry policies; max_connection_pools is refused. One HTTP or TCP health
  check (proxy/upstream/health_check.py); gRPC/custom checks and TCP payloads are refused.
- `inbound|<port>` (STATIC, the local app): the sidecar builds its own from the inbound
  listener; only its protocol is read: HTTP/2 protocol options (http2 and grpc ports)
  make the app port an HTTP/2 one (the sidecar speaks h2c to the app there).
- PassthroughCluster (ORIGINAL_DST): traffic outside the mesh passes through.
- HTTP/2 and gRPC service ports (the `protocol` metadata, or HTTP/2 protocol options):
  clusters of protocol http2/grpc, reached over multiplexed h2 (ALPN h2 over mTLS).
- Other discovery types (DNS, ...) and unknown transport sockets: ConfigError.

EDS is decoded in endpoints.py.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from envoy.type.v3 import http_pb2
from google.protobuf import any_pb2

from gossamer.contract import lb_policies, xds
from gossamer.errors import ConfigError
from gossamer.proxy.config import (
    BreakerLimits,
    Cluster,
    HealthCheck,
    LbPolicy,
    OutlierDetection,
    Protocol,
)
from gossamer.proxy.xds.endpoints import (
    EndpointSpec,
    enum_name,
    load_assignment,
    seconds,
    struct_value,
    unpack,
)

_PREFIX = "type.googleapis.com/"
PROTOCOLS = frozenset(p.value for p in Protocol)
TLS_SOCKET_TYPE = _PREFIX + "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
RAW_SOCKET_TYPE = _PREFIX + "envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"


@dataclass(frozen=True)
class ClusterSpec:
    """An outbound cluster as CDS describes it; `cluster.lb_policy` is RANDOM for a ring
    hash (`ring_hash`) until a route supplies the header."""

    cluster: Cluster
    eds_name: str  # "" for a STATIC cluster, whose endpoints are `inline`
    ring_hash: bool = False
    tls_mode: str | None = None  # endpoints with this tlsMode get TLS; None: all (if tls)
    retry_budget: float | None = None
    inline: tuple[EndpointSpec, ...] = ()


@dataclass(frozen=True)
class ClusterSet:
    """A decoded CDS update."""

    outbound: Mapping[str, ClusterSpec] = field(default_factory=dict)
    inbound_ports: frozenset[int] = frozenset()
    inbound_h2: frozenset[int] = frozenset()  # app ports that speak HTTP/2
    passthrough: bool = False
    ignored: Mapping[str, str] = field(default_factory=dict)  # name -> why

    @property
    def eds_names(self) -> tuple[str, ...]:
        return tuple(sorted({s.eds_name for s in self.outbound.values() if s.eds_name}))


# -- clusters ----------------------------------------------------------------------
def decode_clusters(resources: Sequence[any_pb2.Any]) -> ClusterSet:
    outbound: dict[str, ClusterSpec] = {}
    inbound: set[int] = set()
    inbound_h2: set[int] = set()
    ignored: dict[str, str] = {}
    passthrough = False
    for packed in resources:
        cluster = unpack(packed, cluster_pb2.Cluster(), "CDS resource")
        name = cluster.name
        if cluster.type == cluster_pb2.Cluster.ORIGINAL_DST:
            passthrough = True
            continue
        if name.startswith("inbound|"):
            port = _inbound_port(cluster)
            inbound.add(port)
            if _http2(cluster):
                inbound_h2.add(port)
            continue
        spec = _outbound(cluster)
        if isinstance(spec, str):
            ignored[name] = spec
        else:
            outbound[name] = spec
    return ClusterSet(outbound, frozenset(inbound), frozenset(inbound_h2), passthrough, ignored)


def _inbound_port(cluster: cluster_pb2.Cluster) -> int:
    port = cluster.name.removeprefix("inbound|")
    if not port.isdigit():
        raise ConfigError(f"cluster {cluster.name}: expected inbound|<port>")
    return int(port)


def _http2(cluster: cluster_pb2.Cluster) -> bool:
    packed = cluster.typed_extension_protocol_options.get(xds.HTTP_PROTOCOL_OPTIONS)
    if packed is None:
        return False
    options = unpack(
        packed, http_protocol_options_pb2.HttpProtocolOptions(), f"cluster {cluster.name}"
    )
    if options.HasField("explicit_http_config"):
        return bool(options.explicit_http_config.HasField("http2_protocol_options"))
    return bool(options.HasField("use_downstream_protocol_config")) or bool(
        options.HasField("auto_config")
    )


def _identity(cluster: cluster_pb2.Cluster) -> tuple[str, str, str]:
    """(service, namespace, protocol) from the gossamer metadata, else from the name."""
    meta = cluster.metadata.filter_metadata.get(xds.GOSSAMER_METADATA)
    if meta is not None and struct_value(meta, "service"):
        return (
            str(struct_value(meta, "service")),
            str(struct_value(meta, "namespace") or "default"),
            str(struct_value(meta, "protocol") or "http"),
        )
    # outbound|<port>||<svc>.<ns>
    parts = cluster.name.split("|")
    if len(parts) == 4 and parts[0] == "outbound" and parts[3]:
        svc, _, ns = parts[3].partition(".")
        return svc, ns or "default", "http"
    raise ConfigError(f"cluster {cluster.name}: cannot tell which service it is")


def _port(cluster: cluster_pb2.Cluster) -> int:
    meta = cluster.metadata.filter_metadata.get(xds.GOSSAMER_METADATA)
    value = struct_value(meta, "port") if meta is not None else None
    if value is None:
        parts = cluster.name.split("|")
        value = parts[1] if len(parts) == 4 and parts[1].isdigit() else None
    if value is None:
        raise ConfigError(f"cluster {cluster.name}: cannot tell its service port")
    port = float(value) if isinstance(value, float | int | str) else math.nan
    if not (port.is_integer() and 0 < port < 65536):  # (NaN, infinities, 1e30, 0.5...)
        raise ConfigError(f"cluster {cluster.name}: service port {value!r} is not a port")
    return int(port)


def _outbound(cluster: cluster_pb2.Cluster) -> ClusterSpec | str:
    name = cluster.name
    if cluster.type not in (cluster_pb2.Cluster.EDS, cluster_pb2.Cluster.STATIC):
        kind = enum_name(cluster_pb2.Cluster.DiscoveryType, cluster.type)
        raise ConfigError(f"cluster {name}: discovery type {kind} is not supported (EDS only)")
    service, namespace, protocol = _identity(cluster)
    if protocol not in ("http2", "grpc", "tcp") and _http2(cluster):
        protocol = "http2"
    lb = lb_policies.decode(cluster)
    identity, sni, tls_mode = _upstream_tls(cluster)
    outlier = _outlier(cluster)
    budget = None
    for threshold in cluster.circuit_breakers.thresholds:
        if threshold.HasField("retry_budget") and threshold.retry_budget.HasField("budget_percent"):
            budget = threshold.retry_budget.budget_percent.value
    panic = 50.0  # Envoy's default
    if cluster.common_lb_config.HasField("healthy_panic_threshold"):
        panic = cluster.common_lb_config.healthy_panic_threshold.value
    try:
        spec = Cluster(
            name=name,
            service=service,
            port=_port(cluster),
            namespace=namespace,
            protocol=Protocol(protocol) if protocol in PROTOCOLS else Protocol.HTTP,
            tls=identity is not None,
            identity=identity,
            sni=sni or None,
            lb_policy=LbPolicy.RANDOM if lb is LbPolicy.RING_HASH else lb,
            connect_timeout=seconds(cluster.connect_timeout)
            if cluster.HasField("connect_timeout")
            else 5.0,
            outlier=outlier,
            panic_threshold=panic,
            breaker=_breaker(cluster),
            health_check=_health_check(cluster),
        )
    except ConfigError as exc:
        raise ConfigError(f"cluster {name}: {exc.message}") from None
    if cluster.type == cluster_pb2.Cluster.STATIC:
        inline = load_assignment(cluster.load_assignment, name)
        return ClusterSpec(spec, "", lb is LbPolicy.RING_HASH, tls_mode, budget, inline)
    eds_name = cluster.eds_cluster_config.service_name or name
    return ClusterSpec(spec, eds_name, lb is LbPolicy.RING_HASH, tls_mode, budget)


def _u32(message: Any, name: str, default: int) -> int:
    return int(getattr(message, name).value) if message.HasField(name) else default


def _outlier(cluster: cluster_pb2.Cluster) -> OutlierDetection:
    """Envoy's OutlierDetection, field for field with Envoy's defaults (proxy/upstream/outlier.py
    has the semantics); no section: off, as in Envoy."""
    if not cluster.HasField("outlier_detection"):
        return OutlierDetection(consecutive_failures=0, consecutive_5xx=0)
    od = cluster.outlier_detection
    if od.split_external_local_origin_errors:
        raise ConfigError(
            f"cluster {cluster.name}: split_external_local_origin_errors is not supported "
            "(local failures count as 5xx and gateway failures)"
        )

    def secs(name: str, default: float) -> float:
        return seconds(getattr(od, name)) if od.HasField(name) else default

    return OutlierDetection(
        consecutive_5xx=_u32(od, "consecutive_5xx", 5),
        enforcing_consecutive_5xx=_u32(od, "enforcing_consecutive_5xx", 100),
        consecutive_failures=_u32(od, "consecutive_gateway_failure", 5),
        enforcing_consecutive_gateway=_u32(od, "enforcing_consecutive_gateway_failure", 0),
        interval=max(secs("interval", 10.0), 0.001),
        base_ejection=secs("base_ejection_time", 30.0),
        max_ejection=secs("max_ejection_time", 300.0),
        max_ejection_percent=_u32(od, "max_ejection_percent", 10),
        success_rate_minimum_hosts=_u32(od, "success_rate_minimum_hosts", 5),
        success_rate_request_volume=_u32(od, "success_rate_request_volume", 100),
        success_rate_stdev_factor=_u32(od, "success_rate_stdev_factor", 1900),
        enforcing_success_rate=_u32(od, "enforcing_success_rate", 100),
    )


def _breaker(cluster: cluster_pb2.Cluster) -> BreakerLimits:
    """The default-priority thresholds. No thresholds: no limits. Thresholds present:
    Envoy's defaults for the limits they leave out (1024 connections, pending and
    active requests; 3 active retries, unless a retry budget governs retries)."""
    name = cluster.name
    chosen = None
    for threshold in cluster.circuit_breakers.thresholds:
        if threshold.priority == base_pb2.DEFAULT:
            chosen = threshold
    if chosen is None:
        return BreakerLimits()
    if chosen.HasField("max_connection_pools"):
        raise ConfigError(
            f"cluster {name}: circuit breaker max_connection_pools is not supported",
            hint="max_connections, max_pending_requests, max_requests and max_retries are",
        )
    budget = chosen.HasField("retry_budget")
    return BreakerLimits(
        max_connections=_u32(chosen, "max_connections", 1024),
        max_pending_requests=_u32(chosen, "max_pending_requests", 1024),
        max_requests=_u32(chosen, "max_requests", 1024),
        max_retries=_u32(chosen, "max_retries", 3)
        if chosen.HasField("max_retries") or not budget
        else None,
    )


def _health_check(cluster: cluster_pb2.Cluster) -> HealthCheck | None:
    """The first HealthCheck (HTTP or TCP); other kinds are refused."""
    name = cluster.name
    if not cluster.health_checks:
        return None
    if len(cluster.health_checks) > 1:
        raise ConfigError(f"cluster {name}: one health check per cluster is supported")
    hc = cluster.health_checks[0]
    kind = hc.WhichOneof("health_checker")
    if kind not in ("http_health_check", "tcp_health_check"):
        raise ConfigError(
            f"cluster {name}: {kind or 'an empty'} health check is not supported",
            hint="use an HTTP path or a TCP check",
        )
    if not (hc.HasField("timeout") and hc.HasField("interval")):
        raise ConfigError(f"cluster {name}: a health check needs a timeout and an interval")
    if kind == "tcp_health_check" and (
        hc.tcp_health_check.HasField("send") or len(hc.tcp_health_check.receive)
    ):
        raise ConfigError(f"cluster {name}: TCP health check payloads are not supported")
    path = None
    http2 = False
    statuses: tuple[tuple[int, int], ...] = ((200, 201),)
    host = ""
    if kind == "http_health_check":
        http = hc.http_health_check
        path = http.path or "/"
        if not path.startswith("/") or any(c in path for c in " \r\n"):
            raise ConfigError(f"cluster {name}: health check path {path!r} is not a path")
        host = http.host
        if http.codec_client_type not in (http_pb2.HTTP1, http_pb2.HTTP2):
            raise ConfigError(f"cluster {name}: HTTP/3 health checks are not supported")
        http2 = http.codec_client_type == http_pb2.HTTP2
        if http.expected_statuses:
            statuses = tuple((int(r.start), int(r.end)) for r in http.expected_statuses)
    try:
        return HealthCheck(
            http_path=path,
            interval=max(seconds(hc.interval), 0.05),
            timeout=max(seconds(hc.timeout), 0.01),
            unhealthy_threshold=_u32(hc, "unhealthy_threshold", 1),
            healthy_threshold=_u32(hc, "healthy_threshold", 1),
            expected_statuses=statuses,
            host=host,
            http2=http2,
        )
    except ValueError as exc:
        raise ConfigError(f"cluster {name}: health check: {exc}") from None


def _upstream_tls(cluster: cluster_pb2.Cluster) -> tuple[str | None, str, str | None]:
    """(peer SPIFFE ID or None for plaintext, SNI, tlsMode value selecting TLS)."""
    sockets: list[tuple[Any, str | None]] = []
    for match in cluster.transport_socket_matches:
        criteria = dict(match.match.fields)
        if set(criteria) - {xds.TLS_MODE_KEY}:
            raise ConfigError(
                f"cluster {cluster.name}: transport socket match {match.name!r} "
                f"uses keys other than {xds.TLS_MODE_KEY}"
            )
        value = criteria.get(xds.TLS_MODE_KEY)
        sockets.append((match.transport_socket, value.string_value if value else None))
    if cluster.HasField("transport_socket"):
        sockets.append((cluster.transport_socket, None))
    for socket, mode in sockets:
        typed = socket.typed_config
        if typed.type_url == RAW_SOCKET_TYPE:
            continue
        if typed.type_url != TLS_SOCKET_TYPE:
            raise ConfigError(
                f"cluster {cluster.name}: transport socket {socket.name or typed.type_url} "
                "is not supported (TLS or raw_buffer)"
            )
        context = unpack(typed, tls_pb2.UpstreamTlsContext(), f"cluster {cluster.name}")
        identity = _san(context.common_tls_context)
        if identity is None:
            raise ConfigError(
                f"cluster {cluster.name}: upstream TLS without an exact spiffe:// URI SAN "
                "to verify the peer with"
            )
        return identity, context.sni, mode
    return None, "", None


def _san(common: tls_pb2.CommonTlsContext) -> str | None:
    contexts = []
    if common.HasField("combined_validation_context"):
        contexts.append(common.combined_validation_context.default_validation_context)
    if common.HasField("validation_context"):
        contexts.append(common.validation_context)
    for ctx in contexts:
        for typed in ctx.match_typed_subject_alt_names:
            if typed.matcher.exact.startswith("spiffe://"):
                return str(typed.matcher.exact)
        for matcher in ctx.match_subject_alt_names:
            if matcher.exact.startswith("spiffe://"):
                return str(matcher.exact)
    return None
