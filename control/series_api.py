"""`/v1/series` and `/v1/series/info` on the operator API, and the history's lifecycle.

Routes (viewer token):

  GET /v1/series?service=S[&peer=P&direction=inbound|outbound]&metric=M&range=1h&step=30s
  GET /v1/series/info     where points come from, how long and how fine the history is

With `observability.prometheus_url` the points come from Prometheus' range API, with no
scraping here. Otherwise, when the figures come from the sidecars (LiveSource) and
`observability.history` is not off, a `HistoryRecorder` scrapes every `history_step`
while the app runs (started on the app's startup, stopped on its cleanup), keeping only
the services the registry knows (recorder.py), at most `MAX_SERIES` series. Bad
parameters answer 400 naming the parameter; a service with no series answers 200
with no points; with no history at all, 404.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from gossamer.control.api_tokens import ApiToken
from gossamer.control.operator_api import OperatorApi
from gossamer.errors import NotFound
from gossamer.observe.history import HistoryStore
from gossamer.observe.prometheus import PrometheusClient
from gossamer.observe.recorder import HistoryRecorder
from gossamer.observe.series import parse_series_query, series_body
from gossamer.observe.series_sources import HistorySeries, PrometheusSeries, SeriesSource
from gossamer.observe.settings import ObservabilitySettings
from gossamer.observe.sources import FigureSource, LiveSource


def json_response(data: Any) -> web.Response:
    return web.Response(text=json.dumps(data), content_type="application/json")


class SeriesRoutes:
    def __init__(
        self,
        source: SeriesSource | None,
        recorder: HistoryRecorder | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.source = source
        self.recorder = recorder
        self.clock = clock

    def counts(self) -> tuple[int, int]:
        """(series in the embedded history, points it dropped at its series cap)."""
        if self.recorder is None:
            return (0, 0)
        return (len(self.recorder.store), self.recorder.store.dropped)

    def _source(self) -> SeriesSource:
        if self.source is None:
            raise NotFound(
                "no metric history: observability.history is off and there is no "
                "observability.prometheus_url"
            )
        return self.source

    async def series(self, request: web.Request, caller: ApiToken) -> web.Response:
        source = self._source()
        q = parse_series_query(request.query, source.limits())
        now = self.clock()
        points = await source.series(q, now)
        return json_response(series_body(q, points, source=source.name, now=now))

    async def info(self, request: web.Request, caller: ApiToken) -> web.Response:
        return json_response(self._source().info())


def series_source(
    settings: ObservabilitySettings, figures: FigureSource
) -> tuple[SeriesSource | None, HistoryRecorder | None]:
    """Prometheus when configured; else the embedded history fed by the live scraper."""
    if settings.prometheus_url:
        return PrometheusSeries(PrometheusClient(settings.prometheus_url)), None
    if settings.history <= 0 or not isinstance(figures, LiveSource):
        return None, None
    store = HistoryStore(settings.history, settings.history_step)
    registry_state = figures.registry_state

    async def services() -> set[str]:
        state = await registry_state()
        return {key.name for key in state.services} | {key.name for key, _ in state.endpoints}

    return HistorySeries(store), HistoryRecorder(figures.scraper, store, services=services)


def add_series_routes(
    app: web.Application,
    api: OperatorApi,
    settings: ObservabilitySettings,
    figures: FigureSource,
    *,
    clock: Callable[[], float] = time.time,
) -> SeriesRoutes:
    source, recorder = series_source(settings, figures)
    routes = SeriesRoutes(source, recorder, clock)
    app.router.add_get("/v1/series", api._guard("viewer", routes.series))
    app.router.add_get("/v1/series/info", api._guard("viewer", routes.info))
    if recorder is not None:

        async def on_startup(_app: web.Application) -> None:
            recorder.start()

        async def on_cleanup(_app: web.Application) -> None:
            await recorder.stop()

        app.on_startup.append(on_startup)
        app.on_cleanup.insert(0, on_cleanup)
    return routes
