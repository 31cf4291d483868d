"""Three small HTTP services for the demo mesh, one program with a role each.

- `inventory` answers `GET /stock` with stock counts; `--fail-rate` makes a share of
  answers 503 so the dashboards show a success rate below 100%.
- `catalog` answers `GET /items` by asking inventory for stock.
- `web` answers `GET /` by asking catalog for items.
Each calls its upstream through its own sidecar (an HTTP proxy URL, explicit mode) or
directly by name (transparent mode), and forwards the trace headers it received, as
apps in Istio or Linkerd meshes do, so one request yields one trace across the hops.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
from dataclasses import dataclass
from typing import Any

from aiohttp import ClientError, ClientSession, ClientTimeout, web

TRACE_HEADERS = (
    "traceparent",
    "tracestate",
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "x-request-id",
)
ROLES = ("web", "catalog", "inventory")
UPSTREAM_OF = {"web": "catalog", "catalog": "inventory"}
ITEMS = [
    {"sku": "silk-001", "name": "Orb-weaver silk, 10 m"},
    {"sku": "silk-002", "name": "Dragline thread, 50 m"},
    {"sku": "web-003", "name": "Funnel web kit"},
]


def forwarded_headers(request: web.Request) -> dict[str, str]:
    """The trace context of an incoming request, to copy onto outgoing calls."""
    return {name: request.headers[name] for name in TRACE_HEADERS if name in request.headers}


@dataclass(frozen=True)
class DemoConfig:
    role: str
    port: int
    upstream: str | None = None  # base URL of the next service, e.g. http://catalog:8080
    proxy: str | None = None  # the sidecar's outbound port as an HTTP proxy (explicit mode)
    fail_rate: float = 0.0
    latency_ms: float = 2.0
    host: str = "0.0.0.0"


class DemoService:
    def __init__(self, config: DemoConfig, rng: random.Random | None = None) -> None:
        self.config = config
        self.rng = rng or random.Random()
        self.instance = f"{config.role}-{socket.gethostname()}-{os.getpid()}"
        self.session: ClientSession | None = None

    async def _call_upstream(self, path: str, request: web.Request) -> tuple[int, Any]:
        assert self.session is not None and self.config.upstream is not None
        url = self.config.upstream.rstrip("/") + path
        try:
            async with self.session.get(
                url, headers=forwarded_headers(request), proxy=self.config.proxy
            ) as response:
                body = await response.json(content_type=None) if response.status == 200 else None
                return response.status, body
        except (ClientError, TimeoutError, ValueError) as exc:
            return 502, {"error": f"{type(exc).__name__}: {exc}"}

    async def _pause(self) -> None:
        if self.config.latency_ms > 0:
            await asyncio.sleep(self.rng.expovariate(1000.0 / self.config.latency_ms))

    async def handle_inventory(self, request: web.Request) -> web.Response:
        await self._pause()
        if self.rng.random() < self.config.fail_rate:
            return web.json_response({"error": "inventory temporarily unavailable"}, status=503)
        stock = {item["sku"]: self.rng.randint(0, 40) for item in ITEMS}
        return web.json_response({"stock": stock, "served_by": self.instance})

    async def handle_catalog(self, request: web.Request) -> web.Response:
        await self._pause()
        status, body = await self._call_upstream("/stock", request)
        if status != 200 or not isinstance(body, dict):
            return web.json_response(
                {"error": "inventory failed", "upstream_status": status}, status=502
            )
        stock = body.get("stock", {})
        items = [{**item, "in_stock": stock.get(item["sku"], 0)} for item in ITEMS]
        return web.json_response(
            {"items": items, "served_by": self.instance, "inventory": body.get("served_by")}
        )

    async def handle_web(self, request: web.Request) -> web.Response:
        await self._pause()
        status, body = await self._call_upstream("/items", request)
        if status != 200 or not isinstance(body, dict):
            return web.json_response(
                {"error": "catalog failed", "upstream_status": status}, status=502
            )
        return web.json_response(
            {
                "page": "Gossamer demo shop",
                "items": body.get("items", []),
                "path": [self.instance, body.get("served_by"), body.get("inventory")],
            }
        )

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "instance": self.instance})

    def app(self) -> web.Application:
        app = web.Application()
        handler = {
            "web": self.handle_web,
            "catalog": self.handle_catalog,
            "inventory": self.handle_inventory,
        }
        paths = {"web": "/", "catalog": "/items", "inventory": "/stock"}
        role = self.config.role
        app.router.add_get(paths[role], handler[role])
        app.router.add_get("/healthz", self.healthz)
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._stop)
        return app

    async def _start(self, _app: web.Application) -> None:
        self.session = ClientSession(timeout=ClientTimeout(total=10))

    async def _stop(self, _app: web.Application) -> None:
        if self.session is not None:
            await self.session.close()


def run(config: DemoConfig) -> None:
    """Serve until interrupted (SIGINT/SIGTERM)."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency
        pass
    web.run_app(
        DemoService(config).app(),
        host=config.host,
        port=config.port,
        print=None,
        access_log=None,
        handle_signals=True,
    )
