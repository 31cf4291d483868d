"""A steady trickle of requests to the demo's entry service, so dashboards have traffic.

Sends `rate` requests per second (open loop, fixed interval) and prints a one-line
summary every `report_every` seconds. Stops after `duration` seconds when given.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from aiohttp import ClientError, ClientSession, ClientTimeout


@dataclass
class LoadStats:
    sent: int = 0
    ok: int = 0
    failed: int = 0
    codes: dict[int, int] = field(default_factory=dict)

    def record(self, status: int) -> None:
        self.sent += 1
        self.codes[status] = self.codes.get(status, 0) + 1
        if 200 <= status < 400:
            self.ok += 1
        else:
            self.failed += 1


async def _one(session: ClientSession, url: str, proxy: str | None, stats: LoadStats) -> None:
    try:
        async with session.get(url, proxy=proxy) as response:
            await response.read()
            stats.record(response.status)
    except (ClientError, TimeoutError):
        stats.record(0)


async def generate(
    url: str,
    *,
    rate: float = 5.0,
    proxy: str | None = None,
    duration: float | None = None,
    report_every: float = 10.0,
) -> LoadStats:
    stats = LoadStats()
    interval = 1.0 / rate if rate > 0 else 1.0
    pending: set[asyncio.Task[None]] = set()
    start = time.monotonic()
    next_report = start + report_every
    async with ClientSession(timeout=ClientTimeout(total=10)) as session:
        tick = start
        while duration is None or time.monotonic() - start < duration:
            task = asyncio.create_task(_one(session, url, proxy, stats))
            pending.add(task)
            task.add_done_callback(pending.discard)
            tick += interval
            now = time.monotonic()
            if now >= next_report:
                print(f"loadgen: sent={stats.sent} ok={stats.ok} failed={stats.failed}", flush=True)
                next_report = now + report_every
            await asyncio.sleep(max(0.0, tick - now))
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
    return stats
