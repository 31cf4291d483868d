"""Dashboard queries: `/v1/series` latency and the history's memory with 200 services.

Builds the control plane's real operator API app (OperatorApi plus the observe and
series routes, as `gossamer control` does) with the default embedded history (1 h at
10 s), fills it completely for N services and 2 edges per service (every point of
every series, as an hour of the recorder would), serves it on loopback with aiohttp,
and times sequential `GET /v1/series` requests over real HTTP for random services,
edges, metrics and ranges (5m or 1h, the default step). Memory: the Python heap the
fill allocated (tracemalloc), the process RSS growth, and the bound the README states
(8 bytes x 6 metrics x 360 points x series); then the scrapes the live scraper keeps
for as many sidecars (one per service, bench/_kept_scrapes.py: a realistic page each,
kept as `LiveMetrics` keeps them with the recorder's 10 s ticks alone and with a
dashboard polling every 2 s, tracemalloc). Targets: p99 <= 50 ms; memory <= 50 MB,
counted as the history plus the kept scrapes (both with and without the dashboard).

    ./dev bench dashboard_query [--services 200] [--requests 500] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

from aiohttp import ClientSession, web

from bench._harness import free_port, print_table
from bench._kept_scrapes import POLL, simulate
from gossamer.control.api_tokens import ApiTokenStore
from gossamer.control.audit import AuditLog
from gossamer.control.observe_api import add_observe_routes
from gossamer.control.operator_api import ApiSources, OperatorApi
from gossamer.discovery.model import RegistryState
from gossamer.observe.history import METRICS, HistoryStore, edge_key, service_key
from gossamer.observe.series_sources import HistorySeries
from gossamer.observe.settings import ObservabilitySettings

TARGET_P99_MS = 50.0
TARGET_MEMORY_MB = 50.0


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def fill(store: HistoryStore, services: list[str], now: float) -> int:
    """Every slot of every series: one append per step over the whole history."""
    rng = random.Random(1)
    keys = [service_key(s) for s in services]
    for i, s in enumerate(services):
        for j in (1, 2):
            keys.append(edge_key(s, services[(i + j) % len(services)]))
    start = now - store.length
    for n in range(store.size):
        points = {}
        for key in keys:
            rps = rng.uniform(0, 200)
            points[key] = {
                "rps": rps,
                "success_rate": rng.uniform(0.9, 1.0),
                "latency_p50_ms": rng.uniform(1, 5),
                "latency_p95_ms": rng.uniform(5, 50),
                "latency_p99_ms": rng.uniform(50, 200),
                "tcp_bytes_per_s": rps * 900,
            }
        store.append(start + (n + 1) * store.step, points)
    return len(keys)


async def run(services_n: int, requests: int) -> int:
    with tempfile.TemporaryDirectory(prefix="dashboard-query-") as tmp:
        data = Path(tmp)
        tokens = ApiTokenStore(data)
        token = tokens.ensure_admin()
        assert token is not None

        async def state() -> RegistryState:
            return RegistryState(0)

        sources = ApiSources(registry_state=state, sidecars=list, config_info=dict)
        api = OperatorApi(sources, tokens, None, AuditLog(data))
        app = api.app()
        routes = add_observe_routes(app, api, ObservabilitySettings())  # 1 h at 10 s
        assert routes.series is not None and isinstance(routes.series.source, HistorySeries)
        store = routes.series.source.store
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        if routes.series.recorder is not None:
            await routes.series.recorder.stop()  # no sidecars here: the fill stands in
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()

        services = [f"svc-{i:03d}" for i in range(services_n)]
        rss_before = rss_bytes()
        tracemalloc.start()
        began = time.monotonic()
        series = fill(store, services, time.time())
        fill_s = time.monotonic() - began
        heap, _peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rss_growth = rss_bytes() - rss_before

        rng = random.Random(2)
        latencies: list[float] = []
        points = 0
        async with ClientSession(headers={"Authorization": f"Bearer {token}"}) as s:
            for n in range(requests + 20):
                i = rng.randrange(services_n)
                query = {
                    "service": services[i],
                    "metric": rng.choice(METRICS),
                    "range": rng.choice(("5m", "1h")),
                }
                if rng.random() < 0.5:
                    query["peer"] = services[(i - 1) % services_n]  # inbound: peer -> service
                t0 = time.perf_counter()
                async with s.get(f"http://127.0.0.1:{port}/v1/series", params=query) as r:
                    body = await r.json()
                    assert r.status == 200, body
                elapsed = (time.perf_counter() - t0) * 1000
                if n >= 20:  # the first requests warm the connection and the code paths
                    latencies.append(elapsed)
                    points += len(body["points"])
        await runner.cleanup()

    alone = await simulate(services_n, poll=False)
    polled = await simulate(services_n, poll=True)

    latencies.sort()
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]
    mb = 1024 * 1024
    bound = store.memory_bytes()
    total_alone = (heap + alone.heap) / mb
    total_polled = (heap + polled.heap) / mb
    print_table(
        f"/v1/series over HTTP: {services_n} services, {series} series, "
        f"{store.size} points each ({store.length:g}s at {store.step:g}s); "
        f"filled in {fill_s:.1f}s; {requests} requests, {points / len(latencies):.0f} points each",
        ["figure", "value", "target", "met"],
        [
            ["latency p50", f"{p50:.2f} ms", "", ""],
            ["latency p99", f"{p99:.2f} ms", f"<= {TARGET_P99_MS:g} ms", p99 <= TARGET_P99_MS],
            ["latency max", f"{latencies[-1]:.2f} ms", "", ""],
            ["history heap (tracemalloc)", f"{heap / mb:.1f} MB", "", ""],
            ["process RSS growth", f"{rss_growth / mb:.1f} MB", "", ""],
            ["bound: 8 B x 6 metrics x points x series", f"{bound / mb:.1f} MB", "", ""],
            [
                f"kept scrapes, history only ({alone.kept_mean:.0f} per sidecar, "
                f"{alone.per_scrape / 1024:.1f} KiB each)",
                f"{alone.heap / mb:.1f} MB",
                "",
                "",
            ],
            [
                f"kept scrapes, dashboard every {POLL:g}s ({polled.kept_mean:.0f} per "
                f"sidecar, max {polled.kept_max}, {polled.per_scrape / 1024:.1f} KiB each)",
                f"{polled.heap / mb:.1f} MB",
                "",
                "",
            ],
            [
                "history + kept scrapes, history only",
                f"{total_alone:.1f} MB",
                f"<= {TARGET_MEMORY_MB:g} MB",
                total_alone <= TARGET_MEMORY_MB,
            ],
            [
                "history + kept scrapes, dashboard polling",
                f"{total_polled:.1f} MB",
                f"<= {TARGET_MEMORY_MB:g} MB",
                total_polled <= TARGET_MEMORY_MB,
            ],
        ],
    )
    print(
        f"each sidecar's page: {polled.page_bytes / 1024:.1f} KiB of text, "
        f"{polled.samples} gossamer_* samples"
    )
    memory_met = max(total_alone, total_polled) <= TARGET_MEMORY_MB
    return 0 if p99 <= TARGET_P99_MS and memory_met else 1


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="./dev bench dashboard_query", description=__doc__)
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--quick", action="store_true", help="20 services, 50 requests")
    args = parser.parse_args(argv)
    if args.quick:
        args.services, args.requests = 20, 50
    if args.services < 3 or args.requests < 1:
        parser.error("--services must be at least 3 and --requests at least 1")
    return asyncio.run(run(args.services, args.requests))
