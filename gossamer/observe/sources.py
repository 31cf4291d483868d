"""Where figures come from: Prometheus (PromQL) or the sidecars' live /metrics.

Both sources answer the same four questions with the same rows (model.py), so the CLI,
the API routes and the dashboard do not care which one is configured.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from gossamer.discovery.model import RegistryState
from gossamer.observe import live, promql
from gossamer.observe.model import Edge, RouteStat, ServiceStat
from gossamer.observe.prometheus import PrometheusClient
from gossamer.observe.scraper import LiveMetrics, targets_of


class FigureSource(Protocol):
    name: str

    async def stats(self, window: float, service: str | None = None) -> list[ServiceStat]: ...

    async def edges(self, window: float) -> list[Edge]: ...

    async def routes(self, window: float, limit: int | None = None) -> list[RouteStat]: ...

    async def certificates(self) -> list[dict[str, Any]]: ...


class PrometheusSource:
    name = "prometheus"

    def __init__(self, client: PrometheusClient) -> None:
        self.client = client

    async def stats(self, window: float, service: str | None = None) -> list[ServiceStat]:
        results = await self.client.query_many(promql.stat_queries(window, service))
        return promql.stat_rows(results, service)

    async def edges(self, window: float) -> list[Edge]:
        return promql.edges_rows(await self.client.query_many(promql.edges_queries(window)))

    async def routes(self, window: float, limit: int | None = None) -> list[RouteStat]:
        return promql.top_rows(await self.client.query_many(promql.top_queries(window)), limit)

    async def certificates(self) -> list[dict[str, Any]]:
        vector = await self.client.query("gossamer_certificate_expiry_timestamp_seconds")
        out = []
        for sample in vector:
            metric = sample.get("metric", {})
            try:
                when = float(sample["value"][1])
            except (KeyError, IndexError, TypeError, ValueError):
                continue
            if not math.isfinite(when):
                continue
            out.append(
                {
                    "service": metric.get("gossamer_service", ""),
                    "namespace": metric.get("gossamer_namespace", ""),
                    "instance": metric.get("gossamer_instance", metric.get("instance", "")),
                    "identity": metric.get("identity", ""),
                    "expires_at": when,
                }
            )
        return sorted(out, key=lambda c: (c["service"], c["instance"]))


class LiveSource:
    name = "live"

    def __init__(
        self,
        registry_state: Callable[[], Awaitable[RegistryState]],
        scraper: LiveMetrics | None = None,
    ) -> None:
        self.registry_state = registry_state

        async def targets() -> list[live.Target]:
            return targets_of(await registry_state())

        self.scraper = scraper or LiveMetrics(targets)

    async def stats(self, window: float, service: str | None = None) -> list[ServiceStat]:
        pairs = await self.scraper.pairs(window)
        state = await self.registry_state()
        instances: dict[str, int] = {}
        namespaces: dict[str, str] = {}
        for key in state.services:
            namespaces[key.name] = key.namespace
            instances[key.name] = len(state.endpoints_of(key))
        for (key, _), _e in state.endpoints.items():
            namespaces.setdefault(key.name, key.namespace)
            instances.setdefault(key.name, len(state.endpoints_of(key)))
        return live.live_stats(pairs, instances=instances, namespaces=namespaces, service=service)

    async def edges(self, window: float) -> list[Edge]:
        return live.live_edges(await self.scraper.pairs(window))

    async def routes(self, window: float, limit: int | None = None) -> list[RouteStat]:
        rows = live.live_routes(await self.scraper.pairs(window))
        return rows[:limit] if limit is not None else rows

    async def certificates(self) -> list[dict[str, Any]]:
        return live.certificates(await self.scraper.latest())

    async def close(self) -> None:
        await self.scraper.close()
