"""Routing: from a request's authority and path to a route, and from an original
destination (transparent mode) to a cluster.

Virtual hosts match the authority exactly (lower case, with or without port as the
domains list them), then by the longest `*.suffix` wildcard, then `*`. Within a virtual
host the first route whose prefix matches the path wins (Envoy's order). A route with
several weighted clusters picks one per request.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

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


def destination_index(
    clusters: Mapping[str, Cluster], endpoints: Mapping[str, Sequence[Endpoint]]
) -> dict[tuple[str, int], str]:
    """(endpoint address, service port) -> cluster, for original destinations.

    An app in transparent mode connects to an instance's address on the service port;
    that pair names the cluster, whose balancer then picks the instance.
    """
    index: dict[tuple[str, int], str] = {}
    for name, cluster in clusters.items():
        for ep in endpoints.get(name, ()):
            for address in (ep.address, *ep.aliases):
                index.setdefault((address, cluster.port), name)
    return index
