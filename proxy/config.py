"""The sidecar's runtime view of its configuration: frozen dataclasses and a holder.

The xDS client builds a `ProxyConfig` from Envoy resources (Listener, RouteConfiguration,
Cluster, ClusterLoadAssignment, Secret); `static_config.load_static_config` builds one
from a YAML/JSON file for runs without a control plane. Every layer of the data path
reads its settings from these objects, never from globals.

`ConfigHolder.apply(config)` swaps the whole configuration at once. Requests capture the
snapshot current when they start, so in-flight requests finish on the configuration they
began with while new ones see the new one. Subscribers validate first (a `ConfigError`
from any of them rejects the update and leaves the old configuration in place, which is
what the xDS client turns into a NACK), then commit.

Mapping from xDS (for the xDS client):
- Listener `outbound`/`inbound` ports -> `Listeners`; RBAC on `inbound` -> `Authorization`.
- RouteConfiguration `outbound` -> `RouteTable` (virtual hosts, routes with prefix match,
  weighted clusters, timeout, retry policy: `num_retries + 1` is `RetryPolicy.attempts`,
  `retry_on` "connect-failure,reset,gateway-error" -> `retry_on` + status codes).
- Cluster `outbound|<port>||<svc>` -> `Cluster` (lb_policy, ring-hash header from the
  route's hash policy, SPIFFE ID from the upstream TLS context's SAN matcher; protocol
  http2/grpc from the metadata or the HTTP/2 protocol options).
- Cluster `inbound|<port>` -> `AppPort`.
- ClusterLoadAssignment -> `Endpoint`s (locality zone, health status, weight).
- Secret `ROOTCA` -> the trust bundle (held by the TLS credentials, not here).
The translation itself is in xds/translate.py (with xds/clusters.py, xds/listeners.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from gossamer.contract.identity import spiffe_matches
from gossamer.contract.vocabulary import Health, LbPolicy, Protocol
from gossamer.errors import ConfigError

__all__ = [
    "IDEMPOTENT_METHODS",
    "AppPort",
    "Authorization",
    "BreakerLimits",
    "Cluster",
    "ConfigHolder",
    "Endpoint",
    "Health",
    "HealthCheck",
    "InboundConfig",
    "LbPolicy",
    "ListenerMode",
    "Listeners",
    "NodeInfo",
    "OutlierDetection",
    "Protocol",
    "ProxyConfig",
    "RetryPolicy",
    "Route",
    "RouteTable",
    "StreamTimeouts",
    "VirtualHost",
    "WeightedCluster",
]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
RETRY_CONDITIONS = frozenset({"connect-failure", "reset"})


class ListenerMode(StrEnum):
    EXPLICIT = "explicit"  # apps send requests to the outbound port (HTTP proxy / Host)
    TRANSPARENT = "transparent"  # iptables REDIRECT; SO_ORIGINAL_DST names the target


def _port(value: int, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise ConfigError(f"port must be between 0 and 65535, got {value!r}", field=name)


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """Who this sidecar is: its service, namespace, zone and node (from the CLI)."""

    service: str
    namespace: str = "default"
    zone: str = ""
    node: str = ""
    trust_domain: str = "gossamer.local"

    @property
    def spiffe_id(self) -> str:
        return f"spiffe://{self.trust_domain}/ns/{self.namespace}/sa/{self.service}"


@dataclass(frozen=True, slots=True)
class StreamTimeouts:
    """How long a request stream may stall, as Envoy's HttpConnectionManager sets it.

    - `idle` (`stream_idle_timeout`): a stream with no bytes received or sent for this
      long is cut: 408 if its response has not started, else reset. A route's
      `idle_timeout` replaces it for the requests that route takes.
    - `request` (`request_timeout`): the whole request (head and body) must have arrived
      this long after its head did, unless the response has started; else 408.
    0 turns either off. The defaults are Envoy's (an HCM without the fields): 5 minutes
    idle, no request timeout; the control plane always sends mesh.yaml's values.
    """

    idle: float = 300.0
    request: float = 0.0

    def __post_init__(self) -> None:
        if self.idle < 0 or self.request < 0:
            raise ConfigError("stream timeouts must not be negative", field="stream_timeouts")


@dataclass(frozen=True, slots=True)
class Listeners:
    """Where the sidecar listens. Ports are fixed for the sidecar's lifetime (its
    command line); 0 means "whatever it listens on", another value must match.

    `passthrough`: unknown destinations (transparent mode) and absolute-form proxy
    requests for hosts outside the mesh (explicit mode) go straight to their target.
    """

    outbound_port: int = 0
    inbound_port: int = 0
    mode: ListenerMode = ListenerMode.EXPLICIT
    outbound_address: str = "127.0.0.1"
    inbound_address: str = "0.0.0.0"
    passthrough: bool = True
    stream_timeouts: StreamTimeouts = field(default_factory=StreamTimeouts)  # outbound's

    def __post_init__(self) -> None:
        _port(self.outbound_port, "listeners.outbound_port")
        _port(self.inbound_port, "listeners.inbound_port")


@dataclass(frozen=True, slots=True)
class Authorization:
    """Which peer identities may call this service (checked before the app sees a byte).

    `allow_all_mesh`: any peer whose certificate chains to the trust bundle; otherwise
    only the SPIFFE IDs in `allowed`. An entry ending in `*` matches every ID that
    starts with the rest (`spiffe://td/ns/shop/*`: every service of namespace shop).
    """

    allow_all_mesh: bool = True
    allowed: frozenset[str] = frozenset()

    def allows(self, spiffe_id: str | None) -> bool:
        if spiffe_id is None:
            return False
        if self.allow_all_mesh or spiffe_id in self.allowed:
            return True
        return any(spiffe_matches(entry, spiffe_id) for entry in self.allowed)


@dataclass(frozen=True, slots=True)
class AppPort:
    """A port of the local app, served through cluster `inbound|<port>`.

    `port` is the service port (what peers name in their SNI); the app listens on
    `target_port` when it differs (0: the same), on `address`.
    """

    port: int
    protocol: Protocol = Protocol.HTTP
    address: str = "127.0.0.1"
    target_port: int = 0

    def __post_init__(self) -> None:
        _port(self.port, "inbound.app_ports.port")
        _port(self.target_port, "inbound.app_ports.target_port")

    @property
    def cluster_name(self) -> str:
        return f"inbound|{self.port}"

    @property
    def local_port(self) -> int:
        return self.target_port or self.port


@dataclass(frozen=True, slots=True)
class InboundConfig:
    app_ports: tuple[AppPort, ...] = ()
    authorization: Authorization = field(default_factory=Authorization)
    stream_timeouts: StreamTimeouts = field(default_factory=StreamTimeouts)

    def app_port(self, port: int | None) -> AppPort | None:
        """The app port a connection targets (from its SNI); the first one by default."""
        for ap in self.app_ports:
            if ap.port == port:
                return ap
        if port is None and self.app_ports:
            return self.app_ports[0]
        return None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Per-route retries.

    attempts: total tries including the first (xDS num_retries + 1).
    retry_on: failure kinds ("connect-failure", "reset"); retry_status_codes: responses;
    retry_grpc_statuses: gRPC statuses of trailers-only answers (14: UNAVAILABLE), retried
    whatever the method, only when the whole request body was buffered (unary calls).
    A per-try timeout counts as a 504. Non-idempotent methods are retried only when
    `retry_non_idempotent`. The budget allows `budget_percent` of requests as retries
    over a sliding window, plus `min_retries_per_second`.
    """

    attempts: int = 3
    per_try_timeout: float | None = None
    retry_on: frozenset[str] = frozenset({"connect-failure", "reset"})
    retry_status_codes: frozenset[int] = frozenset({502, 503, 504})
    retry_grpc_statuses: frozenset[int] = frozenset()  # gRPC statuses (trailers-only)
    retry_non_idempotent: bool = False
    budget_percent: float = 20.0
    min_retries_per_second: float = 10.0
    backoff_base: float = 0.025
    backoff_max: float = 0.25

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ConfigError(f"must be at least 1, got {self.attempts}", field="retry.attempts")
        unknown = self.retry_on - RETRY_CONDITIONS
        if unknown:
            raise ConfigError(
                f"unknown retry condition {sorted(unknown)[0]!r}",
                field="retry.retry_on",
                hint="conditions: connect-failure, reset, or a status code such as 503",
            )
        if not 0 <= self.budget_percent <= 1000:
            raise ConfigError("must be between 0 and 1000", field="retry.budget_percent")
        if self.backoff_base < 0 or self.backoff_max < self.backoff_base:
            raise ConfigError("need 0 <= backoff_base <= backoff_max", field="retry.backoff")


@dataclass(frozen=True, slots=True)
class WeightedCluster:
    name: str
    weight: int = 1

    def __post_init__(self) -> None:
        if self.weight < 1:
            raise ConfigError(f"weight must be at least 1, got {self.weight}", field=self.name)


@dataclass(frozen=True, slots=True)
class Route:
    """A path-prefix route to one or more weighted clusters."""

    name: str
    clusters: tuple[WeightedCluster, ...]
    prefix: str = "/"
    timeout: float | None = 15.0
    retry: RetryPolicy | None = None
    idle_timeout: float | None = None  # replaces the listener's stream idle timeout

    def __post_init__(self) -> None:
        if not self.clusters:
            raise ConfigError("a route needs at least one cluster", field=f"route {self.name}")


@dataclass(frozen=True, slots=True)
class VirtualHost:
    """Requests whose authority matches one of `domains` (exact, `*.suffix`, or `*`)."""

    name: str
    domains: tuple[str, ...]
    routes: tuple[Route, ...]


@dataclass(frozen=True, slots=True)
class RouteTable:
    """`validate_clusters` (RDS's field of that name): every cluster a route names must
    exist. Off (the xDS default), a route to an unknown cluster answers 503 `no-cluster`
    until the cluster arrives, so CDS and RDS updates can land in either order."""

    name: str = "outbound"
    virtual_hosts: tuple[VirtualHost, ...] = ()
    validate_clusters: bool = True


@dataclass(frozen=True, slots=True)
class OutlierDetection:
    """Passive health, Envoy's outlier detection (semantics in proxy/upstream/outlier.py).

    - `consecutive_failures`: gateway failures in a row (connect failures, resets,
      502/503/504; Envoy's consecutive_gateway_failure), enforced at
      `enforcing_consecutive_gateway` percent; 0: off.
    - `consecutive_5xx`: any 5xx or local failure in a row, enforced at
      `enforcing_consecutive_5xx` percent; 0: off.
    - success rate, evaluated every `interval` seconds when `enforcing_success_rate` > 0:
      among hosts with at least `success_rate_request_volume` requests in the interval
      (if there are `success_rate_minimum_hosts` of them), a host whose success rate is
      below mean - `success_rate_stdev_factor`/1000 x stdev is ejected.
    - An ejection lasts `base_ejection` x (a multiplier raised by each ejection, lowered
      by each interval the host spends in service), at most max(`max_ejection`,
      `base_ejection`) seconds; at most `max_ejection_percent` of the hosts are out
      (one host may always be)."""

    consecutive_failures: int = 5
    base_ejection: float = 5.0
    max_ejection: float = 60.0
    max_ejection_percent: int = 50
    consecutive_5xx: int = 0
    enforcing_consecutive_5xx: int = 100
    enforcing_consecutive_gateway: int = 100
    interval: float = 10.0
    success_rate_minimum_hosts: int = 5
    success_rate_request_volume: int = 100
    success_rate_stdev_factor: int = 1900
    enforcing_success_rate: int = 0

    @property
    def success_rate(self) -> bool:
        return self.enforcing_success_rate > 0


@dataclass(frozen=True, slots=True)
class BreakerLimits:
    """Circuit-breaker thresholds of a cluster (Envoy's default priority); None: no
    limit. `max_pending_requests`: requests waiting for a connection when
    `max_connections` are open."""

    max_connections: int | None = None
    max_pending_requests: int | None = None
    max_requests: int | None = None
    max_retries: int | None = None


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """Active health checking of a cluster's endpoints (Envoy's HealthCheck): an HTTP
    GET of `http_path` answered with a status in `expected_statuses`, or (path None) a
    connection that opens; `unhealthy_threshold` failures in a row take a host out,
    `healthy_threshold` successes in a row bring it back. `http2`: the GET goes over
    HTTP/2 (ALPN h2 with TLS), as HTTP/2 and gRPC ports need."""

    http_path: str | None = None
    interval: float = 5.0
    timeout: float = 1.0
    unhealthy_threshold: int = 3
    healthy_threshold: int = 2
    expected_statuses: tuple[tuple[int, int], ...] = ((200, 201),)  # [start, end) ranges
    host: str = ""  # Host header ("": the service name)
    http2: bool = False  # the GET over HTTP/2 (Envoy's codec_client_type HTTP2)

    def expected(self, status: int) -> bool:
        return any(lo <= status < hi for lo, hi in self.expected_statuses)


@dataclass(frozen=True, slots=True)
class Cluster:
    """An upstream service port: how to balance it and whom to trust at its endpoints."""

    name: str
    service: str
    port: int
    namespace: str = "default"
    protocol: Protocol = Protocol.HTTP
    tls: bool = True
    identity: str | None = None  # the SPIFFE ID every endpoint must present
    sni: str | None = None  # TLS server name (default: tls.sni_for the service port)
    lb_policy: LbPolicy = LbPolicy.ROUND_ROBIN
    hash_header: str | None = None  # ring_hash key
    connect_timeout: float = 1.0
    max_idle_per_endpoint: int = 64
    idle_timeout: float = 60.0
    outlier: OutlierDetection = field(default_factory=OutlierDetection)
    panic_threshold: float = 0.0  # % healthy below which every host is used (0: never)
    breaker: BreakerLimits = field(default_factory=BreakerLimits)
    health_check: HealthCheck | None = None

    def __post_init__(self) -> None:
        _port(self.port, f"clusters.{self.name}.port")
        if self.tls and not (self.identity or "").startswith("spiffe://"):
            raise ConfigError(
                "a TLS cluster needs the SPIFFE ID of its service",
                field=f"clusters.{self.name}.identity",
            )
        if self.lb_policy is LbPolicy.RING_HASH and not self.hash_header:
            raise ConfigError(
                "ring_hash needs a hash_header", field=f"clusters.{self.name}.hash_header"
            )


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One instance of a cluster: where its sidecar's inbound listener is.

    `tls`: False for an instance without a sidecar in a TLS cluster (a static endpoint
    of the mesh file): it is reached in plaintext (xDS: no `tlsMode` metadata).
    `priority`: its locality's priority (EDS; 0 first): traffic goes to the lowest
    priority that has a healthy endpoint. `address` is the one this sidecar connects to
    (on a network it shares with the instance); `aliases` are the instance's others.
    `primary`: the address the control plane verified (EDS `socket_address`), when
    `address` is another one ("": `address` is it). Only the verified address names the
    cluster for any original destination (transparent mode); the others are the
    instance's unverified claims (`proxy/routing/router.py` `destination_index`)."""

    address: str
    port: int
    zone: str = ""
    weight: int = 1
    health: Health = Health.HEALTHY
    tls: bool = True
    priority: int = 0
    node: str = ""  # the node it runs on (EDS locality sub_zone; a node gateway's node)
    aliases: tuple[str, ...] = ()  # its other addresses (other networks), for destinations
    primary: str = ""  # the verified address when `address` is another ("": `address`)

    def __post_init__(self) -> None:
        _port(self.port, f"endpoint {self.address}")
        if self.weight < 1:
            raise ConfigError(f"weight must be at least 1, got {self.weight}", field="weight")

    @property
    def key(self) -> tuple[str, int]:
        return (self.address, self.port)


@dataclass(frozen=True)
class ProxyConfig:
    """Everything the data path needs, with the version of each resource type."""

    node: NodeInfo
    listeners: Listeners = field(default_factory=Listeners)
    inbound: InboundConfig = field(default_factory=InboundConfig)
    routes: RouteTable = field(default_factory=RouteTable)
    clusters: Mapping[str, Cluster] = field(default_factory=dict)
    endpoints: Mapping[str, tuple[Endpoint, ...]] = field(default_factory=dict)
    versions: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("clusters", "endpoints", "versions"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))
        for key, cluster in self.clusters.items():
            if key != cluster.name:
                raise ConfigError(f"cluster registered as {key!r}", field=cluster.name)
        for name in self.endpoints:
            if name not in self.clusters:
                raise ConfigError("endpoints for an unknown cluster", field=f"endpoints.{name}")
        for vh in self.routes.virtual_hosts if self.routes.validate_clusters else ():
            for route in vh.routes:
                for wc in route.clusters:
                    if wc.name not in self.clusters:
                        raise ConfigError(
                            f"route {route.name!r} names unknown cluster {wc.name!r}",
                            field=f"routes.{vh.name}",
                        )


Commit = Callable[[], None]
Prepare = Callable[[ProxyConfig], Commit]


class ConfigHolder:
    """Holds the current `ProxyConfig`; `apply` swaps it atomically (two-phase)."""

    def __init__(self, config: ProxyConfig | None = None) -> None:
        self._current = config
        self._generation = 0 if config is None else 1
        self._subscribers: list[Prepare] = []

    @property
    def current(self) -> ProxyConfig | None:
        return self._current

    @property
    def generation(self) -> int:
        """How many configurations were applied (0: none yet)."""
        return self._generation

    def subscribe(self, prepare: Prepare) -> None:
        """`prepare(config)` validates and returns a commit callback; raise ConfigError
        to reject the configuration."""
        self._subscribers.append(prepare)

    def apply(self, config: ProxyConfig) -> None:
        """Validate with every subscriber, then switch; on error nothing changes."""
        commits = [prepare(config) for prepare in self._subscribers]
        self._current = config
        self._generation += 1
        for commit in commits:
            commit()
