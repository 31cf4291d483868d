"""Routing: from a request's authority and path to a route, and from an original
destination (transparent mode) to a cluster, or to one endpoint of it (`Destinations`:
an address only claimed by an endpoint is pinned to that address).

Virtual hosts match the authority exactly (lower case, with or without port as the
domains list them), then by the longest `*.suffix` wildcard, then `*`. Within a virtual
host the first route whose prefix matches the path wins (Envoy's order). A route with
several weighted clusters picks one per request.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from gossamer.proxy.config import Cluster, Endpoint, Route, RouteTable, VirtualHost


class Router:
    __slots__ = ("_default", "_exact", "_suffixes")

    def __init__(self, table: RouteTable) -> None:
        self._exact: dict[str, VirtualHost] = {}
        suffixes: list[tuple[str, VirtualHost]] = []
        self._default: VirtualHost | None = None
        for vh in table.virtual_hosts:
            for domain in vh.domains:
                d = domain.lower()
                if d == "*":
                    self._default = self._default or vh
                elif d.startswith("*"):
                    suffixes.append((d[1:], vh))
                else:
                    self._exact.setdefault(d, vh)
        suffixes.sort(key=lambda s: -len(s[0]))
        self._suffixes = suffixes

    def virtual_host(self, authority: str) -> VirtualHost | None:
        vh = self._exact.get(authority)
        if vh is not None:
            return vh
        for suffix, candidate in self._suffixes:
            if authority.endswith(suffix):
                return candidate
        return self._default

    def match(self, authority: str, path: bytes) -> tuple[VirtualHost, Route] | None:
        vh = self.virtual_host(authority)
        if vh is None:
            return None
        for route in vh.routes:
            prefix = route.prefix
            if prefix == "/" or path.decode("latin-1").startswith(prefix):
                return vh, route
        return None


def pick_cluster(route: Route, rng: random.Random) -> str:
    """The cluster for one request of a route (weighted when there are several)."""
    clusters = route.clusters
    if len(clusters) == 1:
        return clusters[0].name
    total = sum(c.weight for c in clusters)
    r = rng.random() * total
    for c in clusters:
        r -= c.weight
        if r < 0:
            return c.name
    return clusters[-1].name


@dataclass(frozen=True, slots=True)
class Destinations:
    """Original destinations (transparent mode), from an address and service port.

    `clusters`: an endpoint's verified address -> its cluster, balanced as usual.
    `pinned`: an address some endpoint only claims (an alias) -> the cluster and the
    endpoint to use, placed at that very address: the request goes there alone."""

    clusters: dict[tuple[str, int], str]
    pinned: dict[tuple[str, int], tuple[str, Endpoint]]


def destination_index(
    clusters: Mapping[str, Cluster], endpoints: Mapping[str, Sequence[Endpoint]]
) -> Destinations:
    """The original destinations of every endpoint on its cluster's service port.

    An app in transparent mode connects to an instance's address on the service port;
    that pair names the cluster, whose balancer then picks the instance. Only the
    address the control plane verified (`Endpoint.primary`, else `address`) is trusted
    so: an instance's other addresses (`aliases`, and `address` when it is one of them:
    the one this sidecar reaches it at) are its own claims, which the control plane
    cannot check (issue 17 finding 10). So, first, every verified address is indexed,
    in cluster order, before any claim: a claim never takes over an address some
    endpoint registered as its own. Second, an address only claimed is pinned: the
    connection goes to that same address (with the claimant's port and TLS mode) and
    must present the cluster's identity, never to the cluster's other endpoints. A false
    claim (service X naming the address of service Y's instance, or of a server outside
    the mesh) then ends at the real owner of that address, which cannot present X's
    identity: the handshake fails instead of the traffic reaching X. When several
    endpoints claim one address (for one service port), the first claim names the
    cluster; none is trusted more than another, and the pin goes to that address anyway.
    """
    verified: dict[tuple[str, int], str] = {}
    for name, cluster in clusters.items():
        for ep in endpoints.get(name, ()):
            verified.setdefault((ep.primary or ep.address, cluster.port), name)
    pinned: dict[tuple[str, int], tuple[str, Endpoint]] = {}
    for name, cluster in clusters.items():
        for ep in endpoints.get(name, ()):
            own = ep.primary or ep.address
            for address in (ep.address, *ep.aliases):
                key = (address, cluster.port)
                if address == own or key in verified or key in pinned:
                    continue
                pinned[key] = (name, replace(ep, address=address, aliases=(), primary=""))
    return Destinations(verified, pinned)
