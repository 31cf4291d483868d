"""Pinned destinations: a cluster narrowed to the one endpoint an app dialled.

In transparent mode an original destination that only an endpoint's unverified claim
names (an alias: its address on another network, which the control plane cannot check)
is not balanced over the cluster: the connection goes to that very address, with the
claimant's port and TLS mode, and the peer must present the cluster's identity
(`proxy/routing/router.py` `destination_index`). `PinnedRuntime` is the cluster's runtime
for that one host: the data path (`dispatch.py`, the outbound listener's TCP relays)
uses it as any cluster, and its `choose` always answers the pinned host (retries and
ejections have nowhere else to go: the app asked for this address). It shares the
cluster's settings and circuit breaker; when the address is where this sidecar reaches
one of the cluster's endpoints anyway, it shares that endpoint's host and pool too, so
outlier detection and pooled connections are the same.

Built with each configuration (`ClusterManager.prepare`), never per request: a request
whose destination is a verified address does no extra work.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from gossamer.proxy.config import Cluster, Endpoint
from gossamer.proxy.upstream.balancer import Host, RoundRobin
from gossamer.proxy.upstream.runtime import ClusterRuntime, Pool

Destination = tuple[str, int]
# (cluster name, cluster, endpoint) -> its host and pool (kept across configurations)
MakeHost = Callable[[str, Cluster, Endpoint], tuple[Host, Pool]]


class PinnedRuntime(ClusterRuntime):
    """A cluster's runtime with one host, which every try goes to."""

    __slots__ = ()

    def choose(self, headers: list[tuple[bytes, bytes]], avoid: list[Host]) -> Host | None:
        return self.hosts[0]

    def refresh(self, now: float) -> None:
        """Nothing to avoid: the one host is the destination."""
        self.excluded = []
        self.recheck_at = float("inf")


def pin(
    claims: Mapping[Destination, tuple[str, Endpoint]],
    runtimes: Mapping[str, ClusterRuntime],
    make: MakeHost,
) -> dict[Destination, ClusterRuntime]:
    """A `PinnedRuntime` for each claimed destination (router `Destinations.pinned`)."""
    out: dict[Destination, ClusterRuntime] = {}
    for dst, (name, endpoint) in claims.items():
        runtime = runtimes.get(name)
        if runtime is None:
            continue
        host = next((h for h in runtime.hosts if h.endpoint.key == endpoint.key), None)
        if host is not None:
            pool = runtime.pools[endpoint.key]
        else:
            host, pool = make(name, runtime.config, endpoint)
        out[dst] = PinnedRuntime(
            runtime.config,
            [host],
            RoundRobin([host], runtime.rng, runtime.clock),
            {endpoint.key: pool},
            runtime.clock,
            runtime.on_eject,
            breaker=runtime.breaker,
            rng=runtime.rng,
        )
    return out
