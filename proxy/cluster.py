"""Clusters at run time: hosts, balancer and connection pools, rebuilt per configuration.

`ClusterManager.prepare(config)` builds new `ClusterRuntime`s without side effects;
the returned commit publishes them and closes the pools of endpoints that disappeared.
Hosts (in-flight counts, RTT estimates) and pools are kept across configurations for
endpoints that did not change, so a routine EDS update does not reset connections.
HTTP/1.1 and TCP clusters get `EndpointPool`s; http2/grpc clusters get `H2Pool`s
(multiplexed h2: over mTLS with ALPN `h2`, which the peer must select, or h2c to the
local app), so each call is balanced on its own.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gossamer.errors import UpstreamConnectError
from gossamer.proxy.balancer import Balancer, Host, make_balancer
from gossamer.proxy.config import (
    Cluster,
    Endpoint,
    InboundConfig,
    LbPolicy,
    OutlierDetection,
    ProxyConfig,
)
from gossamer.proxy.h2.client import H2Client
from gossamer.proxy.h2.pool import H2Pool
from gossamer.proxy.http1.client import Http1Client
from gossamer.proxy.pool import EndpointPool, open_mtls, open_plain
from gossamer.proxy.router import Router, destination_index
from gossamer.proxy.tls import CredentialHolder, sni_for

PoolKey = tuple[str, tuple[str, int]]
Pool = EndpointPool | H2Pool  # HTTP/1.1 (and TCP tunnels) or multiplexed HTTP/2

# -- outlier detection -------------------------------------------------------
# Outlier detection: leave out endpoints that keep failing (pure; clock injected).
#
# Consecutive failures of a host (connect failures, resets, 502/503/504 answers) count
# up; a success resets the count. At the threshold the host is ejected for
# `base_ejection x ejections` seconds (capped), unless that would put more than
# `max_ejection_percent` of the cluster's hosts out at once (one host may always be out).
# Ejected hosts are avoided by the balancer while others exist; when the time is up the
# host takes traffic again and is ejected for longer if it fails again.

GATEWAY_ERRORS = frozenset({502, 503, 504})


def is_ejected(host: Host, now: float) -> bool:
    return host.ejected_until > now


def record_success(host: Host) -> None:
    host.failures = 0
    host.ejections = 0


def record_failure(host: Host, hosts: Sequence[Host], policy: OutlierDetection, now: float) -> bool:
    """Count a failure; True when it ejected the host."""
    host.failures += 1
    if not policy.consecutive_failures or host.failures < policy.consecutive_failures:
        return False
    if is_ejected(host, now):
        return False
    out = sum(1 for h in hosts if is_ejected(h, now))
    if out >= max(1, len(hosts) * policy.max_ejection_percent // 100):
        return False
    host.ejections += 1
    host.failures = 0
    host.ejected_until = now + min(policy.base_ejection * host.ejections, policy.max_ejection)
    return True


def ejected(hosts: Sequence[Host], now: float) -> list[Host]:
    return [h for h in hosts if h.ejected_until > now]


class ClusterRuntime:
    __slots__ = (
        "balancer",
        "clock",
        "config",
        "ejected_until",
        "hash_header",
        "hosts",
        "measure_rtt",
        "on_eject",
        "pools",
        "service_label",
    )

    def __init__(
        self,
        config: Cluster,
        hosts: list[Host],
        balancer: Balancer,
        pools: dict[tuple[str, int], Pool],
        clock: Callable[[], float],
        on_eject: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.on_eject = on_eject  # called with the service name when a host is ejected
        self.hosts = hosts
        self.balancer = balancer
        self.pools = pools
        self.clock = clock
        self.hash_header = config.hash_header.lower().encode() if config.hash_header else None
        self.service_label = config.service
        # latest end of an ejection among the hosts (0: none), so that choosing a host
        # costs nothing extra while no host is ejected
        self.ejected_until = max((h.ejected_until for h in hosts), default=0.0)
        self.measure_rtt = config.lb_policy is LbPolicy.EWMA

    def choose(self, headers: list[tuple[bytes, bytes]], avoid: list[Host]) -> Host | None:
        """A host for the next try: not one already tried, nor an ejected one, when the
        balancer has another."""
        key = None
        if self.hash_header is not None:
            for k, v in headers:
                if k.lower() == self.hash_header:
                    key = v
                    break
        if self.ejected_until:
            now = self.clock()
            if now < self.ejected_until:
                out = [h for h in self.balancer.hosts if h.ejected_until > now]
                avoid = [*avoid, *out]
            else:
                self.ejected_until = 0.0
        return self.balancer.choose(key, avoid)

    def succeeded(self, host: Host) -> None:
        if host.failures or host.ejections:
            record_success(host)

    def failed(self, host: Host) -> None:
        if (
            record_failure(host, self.balancer.hosts, self.config.outlier, self.clock())
            and self.on_eject is not None
        ):
            self.on_eject(self.service_label)
        self.ejected_until = max(self.ejected_until, host.ejected_until)

    def pool(self, host: Host) -> Pool:
        return self.pools[host.endpoint.key]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a request needs, captured when it starts (in-flight requests keep theirs)."""

    config: ProxyConfig
    router: Router
    clusters: Mapping[str, ClusterRuntime]
    destinations: Mapping[tuple[str, int], str]

    @property
    def inbound(self) -> InboundConfig:
        return self.config.inbound


class ClusterManager:
    def __init__(
        self,
        credentials: CredentialHolder,
        *,
        trust_domain: str = "gossamer.local",
        rng: random.Random,
        clock: Callable[[], float],
        on_eject: Callable[[str], None] | None = None,
    ) -> None:
        self.credentials = credentials
        self.trust_domain = trust_domain
        self.on_eject = on_eject
        self.rng = rng
        self.clock = clock
        self._hosts: dict[tuple[str, Endpoint], Host] = {}
        # pool key -> ((cluster settings, endpoint TLS), pool): reused while both are equal
        self._pools: dict[PoolKey, tuple[tuple[Cluster, bool], Pool]] = {}

    def _connector(
        self, cluster: Cluster, endpoint: Endpoint
    ) -> Callable[[Http1Client | H2Client, float], Any]:
        address, port = endpoint.address, endpoint.port
        sni = cluster.sni or sni_for(
            cluster.service, cluster.namespace, cluster.port, self.trust_domain
        )

        tls = cluster.tls and endpoint.tls
        h2 = cluster.protocol.is_h2

        async def connect(conn: Http1Client | H2Client, allowed: float) -> Any:
            limit = min(cluster.connect_timeout, allowed)
            if not tls:
                return await open_plain(address, port, conn, limit)
            contexts = self.credentials.contexts
            if contexts is None:
                raise UpstreamConnectError("no certificate yet")
            layer = await open_mtls(
                address,
                port,
                conn,
                context=contexts.client_h2 if h2 else contexts.client,
                sni=sni,
                identity=cluster.identity,
                connect_timeout=limit,
            )
            if h2 and layer.get_extra_info("ssl_object").selected_alpn_protocol() != "h2":
                layer.abort()
                raise UpstreamConnectError(f"{address}:{port} did not negotiate HTTP/2 (ALPN h2)")
            return layer

        return connect

    def prepare(self, config: ProxyConfig) -> tuple[Snapshot, Callable[[], None]]:
        hosts: dict[tuple[str, Endpoint], Host] = {}
        pools: dict[PoolKey, tuple[tuple[Cluster, bool], Pool]] = {}
        runtimes: dict[str, ClusterRuntime] = {}
        for name, cluster in config.clusters.items():
            cluster_hosts = []
            cluster_pools: dict[tuple[str, int], Pool] = {}
            for ep in config.endpoints.get(name, ()):
                host = self._hosts.get((name, ep)) or Host(ep)
                hosts[(name, ep)] = host
                cluster_hosts.append(host)
                old = self._pools.get((name, ep.key))
                pool: Pool
                if old is not None and old[0] == (cluster, ep.tls):
                    pool = old[1]
                elif cluster.protocol.is_h2:
                    pool = H2Pool(
                        self._connector(cluster, ep),
                        idle_timeout=cluster.idle_timeout,
                        clock=self.clock,
                        scheme=b"https" if cluster.tls and ep.tls else b"http",
                    )
                else:
                    pool = EndpointPool(
                        self._connector(cluster, ep),
                        max_idle=cluster.max_idle_per_endpoint,
                        idle_timeout=cluster.idle_timeout,
                        clock=self.clock,
                    )
                pools[(name, ep.key)] = ((cluster, ep.tls), pool)
                cluster_pools[ep.key] = pool
            balancer = make_balancer(
                cluster.lb_policy,
                cluster_hosts,
                local_zone=config.node.zone,
                rng=self.rng,
                clock=self.clock,
                panic_threshold=cluster.panic_threshold,
            )
            runtimes[name] = ClusterRuntime(
                cluster, cluster_hosts, balancer, cluster_pools, self.clock, self.on_eject
            )
        snapshot = Snapshot(
            config=config,
            router=Router(config.routes),
            clusters=runtimes,
            destinations=destination_index(config.clusters, config.endpoints),
        )

        def commit() -> None:
            for key, (_, pool) in self._pools.items():
                if pools.get(key, (None, None))[1] is not pool:
                    pool.close()
            self._hosts = hosts
            self._pools = pools

        return snapshot, commit

    def pools(self) -> list[Pool]:
        return [pool for _, pool in self._pools.values()]

    def expire_idle(self) -> None:
        for _, pool in self._pools.values():
            pool.expire()

    def close(self) -> None:
        for _, pool in self._pools.values():
            pool.close()
