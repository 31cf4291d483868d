"""A cluster at run time under one configuration: its hosts, balancer, pools and
circuit breaker, and the hosts to avoid (ejected by outlier detection or failing active
health checks) unless too few are left (panic: every host takes traffic).

`ClusterManager` (`cluster.py`) builds these per configuration; the data path
(`dispatch.py`, the outbound listener) asks `choose` for a host and reports each
exchange's outcome with `result`.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from gossamer.proxy.config import Cluster, Health, LbPolicy
from gossamer.proxy.transport.h2.pool import H2Pool
from gossamer.proxy.transport.pool import EndpointPool
from gossamer.proxy.upstream import outlier
from gossamer.proxy.upstream.balancer import Balancer, Host
from gossamer.proxy.upstream.breaker import CircuitBreaker

Pool = EndpointPool | H2Pool  # HTTP/1.1 (and TCP tunnels) or multiplexed HTTP/2

INF = float("inf")


class ClusterRuntime:
    """One cluster under one configuration: balancer, pools, breaker, and the hosts the
    balancer avoids (ejected by outlier detection or failing active health checks)
    unless too few are left (panic: every host takes traffic)."""

    __slots__ = (
        "balancer",
        "breaker",
        "clock",
        "config",
        "excluded",
        "hash_header",
        "hosts",
        "measure_rtt",
        "next_tick",
        "on_eject",
        "on_first_use",
        "pools",
        "recheck_at",
        "rng",
        "service_label",
        "used",
    )

    def __init__(
        self,
        config: Cluster,
        hosts: list[Host],
        balancer: Balancer,
        pools: dict[tuple[str, int], Pool],
        clock: Callable[[], float],
        on_eject: Callable[[str, str], None] | None = None,
        *,
        breaker: CircuitBreaker | None = None,
        rng: random.Random | None = None,
        used: bool = True,
        on_first_use: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.used = used  # carried a request (health checks start then)
        self.on_first_use = on_first_use
        self.on_eject = on_eject  # (service, reason) when a host is ejected
        self.hosts = hosts
        self.balancer = balancer
        self.pools = pools
        self.clock = clock
        self.breaker = breaker or CircuitBreaker(config.name, config.breaker)
        self.rng = rng or random.Random()
        self.hash_header = config.hash_header.lower().encode() if config.hash_header else None
        self.service_label = config.service
        self.measure_rtt = config.lb_policy is LbPolicy.EWMA
        self.excluded: list[Host] = []
        self.recheck_at = INF  # when the next ejection ends (INF: none)
        now = clock()
        self.next_tick = now + config.outlier.interval
        self.refresh(now)

    def refresh(self, now: float) -> None:
        """Recompute the hosts to avoid; call after an ejection or a health change."""
        out: list[Host] = []
        until = INF
        for h in self.balancer.hosts:
            if h.ejected_until > now:
                out.append(h)
                until = min(until, h.ejected_until)
            elif h.hc_failed:
                out.append(h)
        panic = self.config.panic_threshold
        if out and panic:
            healthy = sum(
                1
                for h in self.hosts
                if h.endpoint.health is Health.HEALTHY
                and not h.hc_failed
                and h.ejected_until <= now
            )
            if healthy * 100 < panic * len(self.hosts):
                out = []
        self.excluded = out
        self.recheck_at = until

    def choose(self, headers: list[tuple[bytes, bytes]], avoid: list[Host]) -> Host | None:
        """A host for the next try: not one already tried, nor an excluded one, when the
        balancer has another."""
        key = None
        if self.hash_header is not None:
            for k, v in headers:
                if k.lower() == self.hash_header:
                    key = v
                    break
        if not self.used:
            self.used = True
            if self.on_first_use is not None:
                self.on_first_use(self.config.name)
        if self.recheck_at != INF:
            now = self.clock()
            if now >= self.recheck_at:
                self.refresh(now)
        if self.excluded:
            avoid = [*avoid, *self.excluded]
        return self.balancer.choose(key, avoid)

    def result(self, host: Host, status: int) -> None:
        """One exchange's outcome for outlier detection: a status, or 0 (LOCAL_FAILURE)
        for a connect failure or reset."""
        if 0 < status < 500 and not (host.failures or host.errors_5xx):
            host.sr_total += 1  # the common case, kept cheap
            host.sr_ok += 1
            return
        now = self.clock()
        reason = outlier.record(
            host, status, self.balancer.hosts, self.config.outlier, now, self.rng
        )
        if reason is not None:
            if self.on_eject is not None:
                self.on_eject(self.service_label, reason)
            self.refresh(now)

    def succeeded(self, host: Host) -> None:
        self.result(host, 200)

    def failed(self, host: Host) -> None:
        self.result(host, outlier.LOCAL_FAILURE)

    def tick(self, now: float) -> None:
        """Outlier detection's interval work, when the interval has passed."""
        if now < self.next_tick:
            return
        self.next_tick = now + self.config.outlier.interval
        for _, reason in outlier.tick(self.balancer.hosts, self.config.outlier, now, self.rng):
            if self.on_eject is not None:
                self.on_eject(self.service_label, reason)
        self.refresh(now)

    def health_changed(self) -> None:
        """An active health check moved a host in or out."""
        self.refresh(self.clock())

    def pool(self, host: Host) -> Pool:
        return self.pools[host.endpoint.key]
