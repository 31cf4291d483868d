"""A small simulated mesh over real loopback HTTP, driven by the telemetry library.

Each `SimService` is an aiohttp server standing for "app + sidecar": for every request
it records what a sidecar records, with `gossamer.proxy.telemetry.wiring` — the inbound
request (`reporter=destination`, server span from the incoming trace headers), and for
a service with an upstream the outbound call (`reporter=source`, client span injected
into the real HTTP request to the next service). Its admin port serves the sidecar's
real `/metrics`. The caller's identity travels in `x-sim-peer` (in the real mesh it is
the mTLS peer certificate). `fail_every=n` makes every n-th answer a 503.

`SimMesh.registry_state()` lists the services and endpoints (with admin ports) as the
control plane's registry would; `drive(n)` sends n real requests into the first service.

For unit tests of pure computation only (tests/unit/control/test_observe_api.py): the
end-to-end tests of stat, edges, top, traces, the dashboard and Prometheus discovery run
real sidecars (tests/helpers/observed_mesh.py), and tests/unit/test_e2e_realness.py
fails when a test under tests/e2e imports this module.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections.abc import Sequence
from typing import Any

from aiohttp import ClientSession, web

from gossamer.contract.identity import ServiceKey
from gossamer.discovery.model import Endpoint, RegistryState, Service, ServicePort
from gossamer.proxy.telemetry.otlp_export import OtlpGrpcExporter
from gossamer.proxy.telemetry.trace_context import TRACE_HEADERS
from gossamer.proxy.telemetry.trace_export import TracingSettings
from gossamer.proxy.telemetry.wiring import CONTENT_TYPE, Telemetry
from tests.helpers.procs import free_port

TRUST_DOMAIN = "gossamer.local"
NAMESPACE = "default"


def spiffe(service: str) -> str:
    return f"spiffe://{TRUST_DOMAIN}/ns/{NAMESPACE}/sa/{service}"


class SimService:
    def __init__(
        self,
        name: str,
        *,
        upstream: SimService | None = None,
        fail_every: int = 0,
        tracing: TracingSettings | None = None,
        instance: str | None = None,
        cert_expires_in: float = 20 * 3600,
    ) -> None:
        self.name = name
        self.instance = instance or f"{name}-1"
        self.upstream = upstream
        self.fail_every = fail_every
        settings = tracing or TracingSettings()
        exporter = None
        if settings.enabled:
            resource = dict(settings.resource)
            resource.update({"service.name": name, "service.instance.id": self.instance})
            settings = dataclasses.replace(settings, resource=tuple(sorted(resource.items())))
            # the sidecar's exporter, on the loop this simulated service runs on
            exporter = OtlpGrpcExporter(
                settings.endpoint or "", insecure=settings.insecure, loop=asyncio.get_running_loop()
            )
        self.telemetry = Telemetry(settings, span_exporter=exporter)
        self.telemetry.metrics.set_certificate_expiry(spiffe(name), time.time() + cert_expires_in)
        self.port = 0
        self.metrics_port = 0  # the sidecar's metrics port: /metrics only
        self._count = itertools.count(1)
        self._transports: set[int] = set()
        self._runners: list[web.AppRunner] = []
        self._session: ClientSession | None = None

    # -- the data path -----------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.Response:
        start = time.perf_counter()
        metrics = self.telemetry.metrics
        peer = request.headers.get("x-sim-peer", "")
        source = peer.rsplit("/sa/", 1)[1] if "/sa/" in peer else "unknown"
        security = "mutual_tls" if peer else "none"
        transport_id = id(request.transport)
        if transport_id not in self._transports:
            self._transports.add(transport_id)
            metrics.tcp(
                "destination", source, self.name, security, peer, spiffe(self.name)
            ).opened()
        headers = [(k.encode(), v.encode()) for k, v in request.headers.items()]
        span = self.telemetry.tracing.start_server_span(
            headers,
            method=request.method,
            path=request.path_qs,
            server_address=self.name,
            server_port=self.port,
            peer_identity=peer or None,
        )
        status = 200
        if self.upstream is not None:
            status = await self._call_upstream(span, headers)
        if self.fail_every and next(self._count) % self.fail_every == 0:
            status = 503
        span.end(status)
        elapsed = time.perf_counter() - start
        metrics.requests("destination", source, self.name, security, "inbound").record(
            status, elapsed
        )
        return web.Response(status=status, text=f"{self.name} {status}\n")

    async def _call_upstream(self, server_span: Any, inbound: list[tuple[bytes, bytes]]) -> int:
        upstream = self.upstream
        assert upstream is not None and self._session is not None
        start = time.perf_counter()
        # the app forwards the context the sidecar gave it; the outbound sidecar then
        # starts a client span from those headers
        app_headers = [(k, v) for k, v in inbound if k.lower() in TRACE_HEADERS]
        server_span.inject(app_headers)
        client = self.telemetry.tracing.start_client_span(
            app_headers,
            method="GET",
            path="/",
            server_address=upstream.name,
            server_port=upstream.port,
            route=f"{upstream.name}-default",
        )
        out_headers = list(app_headers)
        client.inject(out_headers)
        send = {k.decode(): v.decode() for k, v in out_headers}
        send["x-sim-peer"] = spiffe(self.name)
        try:
            async with self._session.get(f"http://127.0.0.1:{upstream.port}/", headers=send) as r:
                await r.read()
                status = r.status
        except OSError:
            status = 502
        client.set_peer(spiffe(upstream.name))
        client.end(status)
        metrics = self.telemetry.metrics
        metrics.requests(
            "source", self.name, upstream.name, "mutual_tls", f"{upstream.name}-default", "GET"
        ).record(status, time.perf_counter() - start)
        return 502 if status >= 500 else 200

    async def metrics_page(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self.telemetry.render_metrics(), headers={"Content-Type": CONTENT_TYPE}
        )

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        self._session = ClientSession()
        app = web.Application()
        app.router.add_get("/", self.handle)
        metrics = web.Application()
        metrics.router.add_get("/metrics", self.metrics_page)
        for application, attr in ((app, "port"), (metrics, "metrics_port")):
            runner = web.AppRunner(application, access_log=None)
            await runner.setup()
            port = free_port()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            setattr(self, attr, port)
            self._runners.append(runner)

    async def stop(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
        if self._session is not None:
            await self._session.close()
        await asyncio.to_thread(self.telemetry.close, 2.0)

    def endpoint(self) -> Endpoint:
        key = ServiceKey(NAMESPACE, self.name)
        return Endpoint(
            key,
            self.instance,
            "127.0.0.1",
            self.port,
            service_ports=(8080,),
            metrics_port=self.metrics_port,
            mtls=True,
            owner="lease:1",
        )


class SimMesh:
    """Services in a chain: names[0] -> names[1] -> ... (the last one answers)."""

    def __init__(
        self,
        names: Sequence[str] = ("web", "catalog", "inventory"),
        *,
        fail_every: dict[str, int] | None = None,
        tracing: TracingSettings | None = None,
        cert_expires_in: dict[str, float] | None = None,
    ) -> None:
        self.services: list[SimService] = []
        upstream = None
        for name in reversed(names):
            svc = SimService(
                name,
                upstream=upstream,
                fail_every=(fail_every or {}).get(name, 0),
                tracing=tracing,
                cert_expires_in=(cert_expires_in or {}).get(name, 20 * 3600),
            )
            self.services.insert(0, svc)
            upstream = svc
        self._client: ClientSession | None = None
        self.sent = 0
        self.statuses: dict[int, int] = {}

    def __getitem__(self, name: str) -> SimService:
        return next(s for s in self.services if s.name == name)

    async def start(self) -> SimMesh:
        for svc in reversed(self.services):
            await svc.start()
        self._client = ClientSession()
        return self

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.close()
        for svc in self.services:
            await svc.stop()

    async def __aenter__(self) -> SimMesh:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def request(self, headers: dict[str, str] | None = None) -> int:
        assert self._client is not None
        entry = self.services[0]
        async with self._client.get(f"http://127.0.0.1:{entry.port}/", headers=headers) as r:
            await r.read()
            self.sent += 1
            self.statuses[r.status] = self.statuses.get(r.status, 0) + 1
            return r.status

    async def drive(self, count: int, concurrency: int = 4) -> None:
        queue = iter(range(count))

        async def worker() -> None:
            for _ in queue:
                await self.request()

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    async def drive_for(self, seconds: float, rate: float = 50.0) -> None:
        """Send about `rate` requests per second for `seconds` (paced, not flooding)."""
        deadline = time.monotonic() + seconds
        interval = 1.0 / rate
        next_at = time.monotonic()
        while time.monotonic() < deadline:
            await self.request()
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)

    def registry_state(self, revision: int = 1) -> RegistryState:
        services = {}
        endpoints = {}
        for svc in self.services:
            key = ServiceKey(NAMESPACE, svc.name)
            services[key] = Service(svc.name, NAMESPACE, (ServicePort(8080, "http"),))
            endpoints[(key, svc.instance)] = svc.endpoint()
        return RegistryState(revision, services, endpoints)
