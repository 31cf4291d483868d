"""The memory of the scrapes the control plane's live scraper keeps (for dashboard_query).

Besides the history's rings, `LiveMetrics` (gossamer/observe/scraper.py) keeps each
sidecar's parsed scrapes of the last `keep` (10 min): all of the last minute, older ones
at least 30 s apart, packed (gossamer/observe/packed.py). This simulates N sidecars on the real
`LiveMetrics` (its `tick`, `refresh`, packing and `_thin`) under a simulated clock
for longer than `keep`, and measures with tracemalloc what stays:

- "history only": the recorder's `tick` every 10 s (the default step), nothing else;
- "dashboard polling": the same, plus a dashboard asking every 2 s (`refresh` with the
  default 1 min window, as /v1/overview does).

Each sidecar serves a realistic page: the real sidecar registry (`SidecarMetrics`) with
the traffic of a service called by two services and calling two (requests by status,
latency histograms, routes, TCP connections and bytes, both reporters), xDS updates,
listener connections and a certificate expiry. A sidecar's first scrape parses its page
for real (`parse_exposition`); later scrapes copy that parse with every value advanced
(new float objects, as a re-parse makes; a kept scrape holds only its values, packed
over the layout it shares with the target's earlier scrapes), so the simulation takes seconds, not
the ~1 hour of real parsing. That cache of first parses is dropped before the memory is
read: what the kept scrapes still share with it (their layouts' label keys) is counted.
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from dataclasses import dataclass

from gossamer.observe.live import Samples, Scrape, Target, parse_exposition
from gossamer.observe.scraper import LiveMetrics
from gossamer.proxy.telemetry.metrics import SidecarMetrics

SPIFFE = "spiffe://gossamer.local/ns/default/sa/"
STEP = 10.0  # the default history step
POLL = 2.0  # the dashboard's polling
WINDOW = 60.0  # the default rate window of /v1/overview
SIMULATED = 720.0  # seconds: longer than the scraper's `keep` (600 s)


def sidecar_page(i: int, services: list[str]) -> str:
    """The /metrics page of service i's sidecar: called by i-1 and i-2, calling i+1 and i+2."""
    n = len(services)
    me = services[i]
    metrics = SidecarMetrics()
    for k, (caller, callee) in enumerate(
        [
            (services[(i - 1) % n], me),
            (services[(i - 2) % n], me),
            (me, services[(i + 1) % n]),
            (me, services[(i + 2) % n]),
        ]
    ):
        reporter = "destination" if callee == me else "source"
        for route, method in (("api", "GET"), ("api", "POST"), ("health", "GET")):
            series = metrics.requests(reporter, caller, callee, "mutual_tls", route, method)
            for j in range(200 + 37 * k):
                status = 500 if j % 50 == 0 else 404 if j % 23 == 0 else 200
                series.record(status, 0.0004 * (1 + j % 40))
        tcp = metrics.tcp(reporter, caller, callee, "mutual_tls", SPIFFE + caller, SPIFFE + callee)
        for _ in range(3 + k):
            tcp.opened()
        tcp.closed(sent=123_456 * (k + 1), received=654_321 * (k + 1))
    for kind in ("CDS", "EDS", "LDS", "RDS", "SDS"):
        metrics.xds_update(kind)
    for listener in ("inbound", "outbound"):
        metrics.connection(listener)
    metrics.set_certificate_expiry(SPIFFE + me, 1_800_000_000.0)
    return metrics.render().decode()


class ReplayedScrapes(LiveMetrics):
    """`LiveMetrics` whose scrapes come from prepared pages instead of HTTP (see the
    module docstring); everything it keeps and thins is its own."""

    def __init__(self, pages: dict[Target, str], clock: list[float]) -> None:
        targets = list(pages)

        async def listed() -> list[Target]:
            return targets

        async def sleep(seconds: float) -> None:
            clock[0] += seconds

        super().__init__(listed, clock=lambda: clock[0], sleep=sleep)
        self.pages = pages
        self.parsed: dict[Target, Samples] = {}
        self.served = 0

    async def _scrape(self, target: Target) -> Scrape:
        self.served += 1
        first = self.parsed.get(target)
        if first is None:
            samples = self.parsed[target] = parse_exposition(self.pages[target])
            return Scrape(target, self._clock(), samples)
        bump = float(self.served)
        copy = {name: {k: v + bump for k, v in series.items()} for name, series in first.items()}
        return Scrape(target, self._clock(), copy)

    def kept(self) -> list[int]:
        return [len(h) for h in self._history.values()]


@dataclass
class KeptScrapes:
    sidecars: int
    page_bytes: int  # one page's text, for scale
    samples: int  # samples a page holds
    kept_mean: float  # scrapes kept per sidecar at the end
    kept_max: int
    heap: int  # bytes tracemalloc still counts after the run

    @property
    def per_scrape(self) -> float:
        return self.heap / (self.sidecars * self.kept_mean)


async def simulate(sidecars: int, poll: bool) -> KeptScrapes:
    services = [f"svc-{i:03d}" for i in range(sidecars)]
    texts = {
        Target(s, "default", f"{s}-0", f"10.0.{i // 250}.{i % 250 + 1}:15090"): sidecar_page(
            i, services
        )
        for i, s in enumerate(services)
    }
    clock = [1000.0]
    gc.collect()
    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    live = ReplayedScrapes(texts, clock)
    start = clock[0]
    t = 0.0
    while t <= SIMULATED:
        clock[0] = start + t
        if t % STEP == 1.0:  # the recorder's tick, 1 s off the polls
            await live.tick()
        if poll and t % POLL == 0.0:
            await live.refresh(WINDOW)
        t += 1.0
    first = next(iter(live.parsed.values()))
    samples = sum(len(series) for series in first.values())
    live.parsed.clear()  # the simulation's cache: what the kept scrapes share stays alive
    del first
    gc.collect()
    after, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    kept = live.kept()
    return KeptScrapes(
        sidecars=sidecars,
        page_bytes=len(next(iter(texts.values())).encode()),
        samples=samples,
        kept_mean=sum(kept) / len(kept),
        kept_max=max(kept),
        heap=after - before,
    )


def measure(sidecars: int) -> tuple[KeptScrapes, KeptScrapes]:
    """(history only, dashboard polling every 2 s)."""
    return asyncio.run(simulate(sidecars, False)), asyncio.run(simulate(sidecars, True))
