"""Observability routes and the dashboard, added to the operator API's app.

Kept apart from operator_api.py so the two evolve without conflicts: the control plane calls
`add_observe_routes(app, api, settings)` on the app `OperatorApi.app()` made. Routes
(role needed):

  GET /                       the dashboard page (open: it holds no data; the page asks
  GET /dashboard/{file}       the API below with the token from its URL fragment)
  GET /v1/stat?service=&window=1m        per-service golden metrics        viewer
  GET /v1/edges?window=1m                caller -> callee with identities  viewer
  GET /v1/top?window=1m&limit=20         busiest routes                    viewer
  GET /v1/overview?window=1m             everything the dashboard draws    viewer
  GET /v1/series?service=&metric=&range=  one metric over time (series_api.py) viewer

Figures come from Prometheus when `observability.prometheus_url` is set, otherwise from
the sidecars' admin /metrics scraped live (gossamer.observe.scraper).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any

from aiohttp import web

from gossamer.control.api_tokens import ApiToken
from gossamer.control.operator_api import OperatorApi, gateway_rows
from gossamer.control.series_api import SeriesRoutes, add_series_routes
from gossamer.errors import ConfigError, GossamerError
from gossamer.observe.overview import merge_certificates, overview
from gossamer.observe.prometheus import PrometheusClient
from gossamer.observe.settings import ObservabilitySettings
from gossamer.observe.sidecars import sidecar_rows
from gossamer.observe.sources import FigureSource, LiveSource, PrometheusSource
from gossamer.yamlconf import parse_duration

ASSETS = {
    "index.html": "text/html",
    "app.js": "application/javascript",
    "tap.js": "application/javascript",
    "charts.js": "application/javascript",
    "style.css": "text/css",
}
MAX_WINDOW = 24 * 3600.0


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(data, default=str), status=status, content_type="application/json"
    )


def _asset(name: str) -> bytes:
    return resources.files("gossamer.control.dashboard").joinpath(name).read_bytes()


def _window(request: web.Request, default: float) -> float:
    raw = request.query.get("window")
    if raw is None:
        return default
    try:
        seconds = parse_duration(raw)
    except ValueError as exc:
        raise ConfigError(str(exc), field="window") from None
    if not 2 <= seconds <= MAX_WINDOW:
        raise ConfigError("must be between 2s and 24h", field="window")
    return seconds


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit", "20")
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise ConfigError("must be a number between 1 and 1000", field="limit")
    return int(raw)


class ObserveRoutes:
    def __init__(
        self,
        api: OperatorApi,
        settings: ObservabilitySettings,
        *,
        source: FigureSource | None = None,
        remembered_nacks: Callable[[], Mapping[str, Mapping[str, Any]]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.api = api
        self.settings = settings
        self.remembered_nacks = remembered_nacks
        self.clock = clock
        if source is None:
            if settings.prometheus_url:
                source = PrometheusSource(PrometheusClient(settings.prometheus_url))
            else:
                source = LiveSource(api.sources.registry_state)
        self.source = source
        self.series: SeriesRoutes | None = None

    async def index(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=_asset("index.html"), content_type="text/html", charset="utf-8")

    async def asset(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in ASSETS:
            raise web.HTTPNotFound()
        return web.Response(
            body=_asset(name),
            content_type=ASSETS[name],
            charset="utf-8",
            headers={"Cache-Control": "no-cache"},
        )

    async def stat(self, request: web.Request, caller: ApiToken) -> web.Response:
        window = _window(request, self.settings.window)
        service = request.query.get("service") or None
        rows = await self.source.stats(window, service)
        return _json(
            {
                "source": self.source.name,
                "window_seconds": window,
                "services": [r.to_dict() for r in rows],
            }
        )

    async def edges(self, request: web.Request, caller: ApiToken) -> web.Response:
        window = _window(request, self.settings.window)
        rows = await self.source.edges(window)
        return _json(
            {
                "source": self.source.name,
                "window_seconds": window,
                "edges": [r.to_dict() for r in rows],
            }
        )

    async def top(self, request: web.Request, caller: ApiToken) -> web.Response:
        window = _window(request, self.settings.window)
        rows = await self.source.routes(window, _limit(request))
        return _json(
            {
                "source": self.source.name,
                "window_seconds": window,
                "routes": [r.to_dict() for r in rows],
            }
        )

    async def overview(self, request: web.Request, caller: ApiToken) -> web.Response:
        window = _window(request, self.settings.window)
        errors: list[str] = []

        async def guarded(coro: Any, empty: Any) -> Any:
            try:
                return await coro
            except GossamerError as exc:
                errors.append(exc.message)
                return empty

        state = await self.api.sources.registry_state()
        stats, edges, certs = await asyncio.gather(
            guarded(self.source.stats(window), []),
            guarded(self.source.edges(window), []),
            guarded(self.source.certificates(), []),
        )
        raw = self.api.sources.sidecars()
        remembered = self.remembered_nacks() if self.remembered_nacks is not None else None
        sidecars = sidecar_rows(raw, remembered)
        certs = merge_certificates(certs, raw)
        body = overview(
            source=self.source.name,
            window=window,
            now=self.clock(),
            stats=stats,
            edges=edges,
            services=[(k.name, k.namespace) for k in sorted(state.services)],
            certificates=certs,
            sidecars=sidecars,
            jaeger_url=self.settings.jaeger_url,
            warn_before=self.settings.certificate_warning,
            errors=errors,
        )
        body["gateways"] = gateway_rows(state)  # node gateways (several nodes)
        return _json(body)

    async def close(self) -> None:
        close = getattr(self.source, "close", None)
        if close is not None:
            await close()


def add_observe_routes(
    app: web.Application,
    api: OperatorApi,
    settings: ObservabilitySettings | None = None,
    *,
    source: FigureSource | None = None,
    remembered_nacks: Callable[[], Mapping[str, Mapping[str, Any]]] | None = None,
    clock: Callable[[], float] = time.time,
) -> ObserveRoutes:
    """Add the dashboard and the /v1/stat, /v1/edges, /v1/top, /v1/overview routes.

    `remembered_nacks` (e.g. the stream registry's `nacks`) lets the dashboard show the
    last NACK of a sidecar whose stream has ended since."""
    routes = ObserveRoutes(
        api,
        settings or ObservabilitySettings(),
        source=source,
        remembered_nacks=remembered_nacks,
        clock=clock,
    )
    r = app.router
    r.add_get("/", routes.index)
    r.add_get("/dashboard/{name}", routes.asset)
    r.add_get("/v1/stat", api._guard("viewer", routes.stat))
    r.add_get("/v1/edges", api._guard("viewer", routes.edges))
    r.add_get("/v1/top", api._guard("viewer", routes.top))
    r.add_get("/v1/overview", api._guard("viewer", routes.overview))
    # /v1/series and /v1/series/info, and the embedded history (control/series_api.py)
    routes.series = add_series_routes(app, api, routes.settings, routes.source, clock=clock)

    async def on_cleanup(_app: web.Application) -> None:
        await routes.close()

    app.on_cleanup.append(on_cleanup)
    return routes
