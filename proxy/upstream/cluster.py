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

import asyncio
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gossamer.errors import UpstreamConnectError
from gossamer.proxy.config import Cluster, Endpoint, InboundConfig, ProxyConfig
from gossamer.proxy.routing.router import Router, destination_index
from gossamer.proxy.transport.h2.client import H2Client
from gossamer.proxy.transport.h2.pool import H2Pool
from gossamer.proxy.transport.http1.client import Http1Client
from gossamer.proxy.transport.pool import EndpointPool, open_mtls, open_plain
from gossamer.proxy.transport.tls_contexts import CredentialHolder, sni_for
from gossamer.proxy.upstream.balancer import Host, make_balancer
from gossamer.proxy.upstream.breaker import CircuitBreaker
from gossamer.proxy.upstream.health_check import HealthChecker
from gossamer.proxy.upstream.pinned import pin
from gossamer.proxy.upstream.runtime import ClusterRuntime, Pool

PoolKey = tuple[str, tuple[str, int]]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a request needs, captured when it starts (in-flight requests keep theirs)."""

    config: ProxyConfig
    router: Router
    clusters: Mapping[str, ClusterRuntime]
    destinations: Mapping[tuple[str, int], str]  # a verified address -> its cluster
    # an address only claimed (an alias) -> its cluster narrowed to that address
    pinned: Mapping[tuple[str, int], ClusterRuntime] = field(default_factory=dict)

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
        on_eject: Callable[[str, str], None] | None = None,
        on_overflow: Callable[[str, str], None] | None = None,
        on_health_failure: Callable[[str], None] | None = None,
    ) -> None:
        self.credentials = credentials
        self.trust_domain = trust_domain
        self.on_eject = on_eject  # (service, reason)
        self.on_overflow = on_overflow  # (service, limit)
        self._breakers: dict[str, CircuitBreaker] = {}
        self._runtimes: Mapping[str, ClusterRuntime] = {}
        self._used: set[str] = set()
        self.health = HealthChecker(
            self.open, rng=rng, on_change=self._health_changed, on_failure=on_health_failure
        )
        self.rng = rng
        self.clock = clock
        self._hosts: dict[tuple[str, Endpoint], Host] = {}
        # pool key -> ((cluster settings, endpoint TLS), pool): reused while both are equal
        self._pools: dict[PoolKey, tuple[tuple[Cluster, bool], Pool]] = {}

    async def open(
        self,
        cluster: Cluster,
        endpoint: Endpoint,
        protocol: asyncio.BaseProtocol,
        limit: float,
        alpn_h2: bool | None = None,
    ) -> Any:
        """A connection to `endpoint` as the cluster's traffic makes them (mTLS with the
        cluster's identity and ALPN h2 for HTTP/2 clusters, or `alpn_h2` when given; or
        plaintext); returns the transport."""
        if not (cluster.tls and endpoint.tls):
            return await open_plain(endpoint.address, endpoint.port, protocol, limit)
        contexts = self.credentials.contexts
        if contexts is None:
            raise UpstreamConnectError("no certificate yet")
        h2 = alpn_h2 if alpn_h2 is not None else cluster.protocol.is_h2
        layer = await open_mtls(
            endpoint.address,
            endpoint.port,
            protocol,
            context=contexts.client_h2 if h2 else contexts.client,
            sni=cluster.sni
            or sni_for(cluster.service, cluster.namespace, cluster.port, self.trust_domain),
            identity=cluster.identity,
            connect_timeout=limit,
        )
        if h2 and layer.get_extra_info("ssl_object").selected_alpn_protocol() != "h2":
            layer.abort()
            raise UpstreamConnectError(
                f"{endpoint.address}:{endpoint.port} did not negotiate HTTP/2 (ALPN h2)"
            )
        self.credentials.track(layer)  # aborted if its peer's leaf gets revoked
        return layer

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
            self.credentials.track(layer)  # aborted if its peer's leaf gets revoked
            return layer

        return connect

    def breaker(self, cluster: Cluster) -> CircuitBreaker:
        """The cluster's breaker (one per name, kept across configurations)."""
        breaker = self._breakers.get(cluster.name)
        if breaker is None:
            on_overflow = self.on_overflow
            service = cluster.service
            breaker = CircuitBreaker(
                cluster.name,
                cluster.breaker,
                None if on_overflow is None else lambda limit: on_overflow(service, limit),
            )
            breaker.reclaim = lambda: self._close_one_idle(cluster.name)
            self._breakers[cluster.name] = breaker
        return breaker

    def _close_one_idle(self, name: str) -> bool:
        for (cluster_name, _), (_, pool) in self._pools.items():
            if cluster_name == name and pool.close_idle():
                return True
        return False

    def _pool(
        self,
        pools: dict[PoolKey, tuple[tuple[Cluster, bool], Pool]],
        name: str,
        cluster: Cluster,
        ep: Endpoint,
    ) -> Pool:
        """The endpoint's pool under this configuration (the old one while its cluster
        settings and TLS mode are the same), recorded in `pools`."""
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
                breaker=self.breaker(cluster),
            )
        else:
            pool = EndpointPool(
                self._connector(cluster, ep),
                max_idle=cluster.max_idle_per_endpoint,
                idle_timeout=cluster.idle_timeout,
                clock=self.clock,
                breaker=self.breaker(cluster),
            )
        pools[(name, ep.key)] = ((cluster, ep.tls), pool)
        return pool

    def prepare(self, config: ProxyConfig) -> tuple[Snapshot, Callable[[], None]]:
        hosts: dict[tuple[str, Endpoint], Host] = {}
        pools: dict[PoolKey, tuple[tuple[Cluster, bool], Pool]] = {}
        runtimes: dict[str, ClusterRuntime] = {}

        def host(name: str, ep: Endpoint) -> Host:
            found = hosts[(name, ep)] = self._hosts.get((name, ep)) or Host(ep)
            return found

        for name, cluster in config.clusters.items():
            cluster_hosts = []
            cluster_pools: dict[tuple[str, int], Pool] = {}
            for ep in config.endpoints.get(name, ()):
                cluster_hosts.append(host(name, ep))
                cluster_pools[ep.key] = self._pool(pools, name, cluster, ep)
            balancer = make_balancer(
                cluster.lb_policy,
                cluster_hosts,
                local_zone=config.node.zone,
                rng=self.rng,
                clock=self.clock,
                panic_threshold=cluster.panic_threshold,
            )
            runtimes[name] = ClusterRuntime(
                cluster,
                cluster_hosts,
                balancer,
                cluster_pools,
                self.clock,
                self.on_eject,
                breaker=self.breaker(cluster),
                rng=self.rng,
                used=cluster.health_check is None or name in self._used,
                on_first_use=self._first_use,
            )
        destinations = destination_index(config.clusters, config.endpoints)
        snapshot = Snapshot(
            config=config,
            router=Router(config.routes),
            clusters=runtimes,
            destinations=destinations.clusters,
            pinned=pin(
                destinations.pinned,
                runtimes,
                lambda name, cluster, ep: (host(name, ep), self._pool(pools, name, cluster, ep)),
            ),
        )

        def commit() -> None:
            for key, (_, pool) in self._pools.items():
                if pools.get(key, (None, None))[1] is not pool:
                    pool.close()
            self._hosts = hosts
            self._pools = pools
            for name, runtime in runtimes.items():
                self._breakers[name].limits = runtime.config.breaker
            for name in set(self._breakers) - set(runtimes):
                del self._breakers[name]
            self._used &= set(runtimes)
            self._runtimes = runtimes
            self._sync_health()

        return snapshot, commit

    # -- outlier detection and health checks ------------------------------------------
    def tick(self) -> None:
        """Outlier detection's interval work for every cluster whose interval passed."""
        now = self.clock()
        for runtime in self._runtimes.values():
            runtime.tick(now)

    def _first_use(self, name: str) -> None:
        self._used.add(name)
        self._sync_health()

    def _sync_health(self) -> None:
        targets: dict[tuple[str, tuple[str, int]], tuple[Cluster, Host]] = {}
        for name, runtime in self._runtimes.items():
            if runtime.config.health_check is not None and name in self._used:
                for host in runtime.hosts:
                    targets[(name, host.endpoint.key)] = (runtime.config, host)
        try:
            self.health.sync(targets)
        except RuntimeError:  # no running loop (configuration applied before start)
            pass

    def _health_changed(self, name: str) -> None:
        runtime = self._runtimes.get(name)
        if runtime is not None:
            runtime.health_changed()

    def pools(self) -> list[Pool]:
        return [pool for _, pool in self._pools.values()]

    def expire_idle(self) -> None:
        for _, pool in self._pools.values():
            pool.expire()

    def close(self) -> None:
        self.health.close()
        for _, pool in self._pools.values():
            pool.close()
