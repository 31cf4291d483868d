"""The background task that fills the embedded history (asyncio; the I/O around history.py).

Every `step` seconds, on the step boundary of the wall clock, it scrapes every sidecar
through the live scraper (`LiveMetrics.tick`), pairs each target's new scrape with the
one of its previous tick, and appends `points_from_pairs` to the `HistoryStore` at the
tick's unix time. A target's first tick yields no rate yet (it needs two scrapes). A
target whose scrape fails keeps its last good scrape as the baseline, so the next good
one gives the rate over both intervals (rates divide by the real time between the two
scrapes); a target no longer listed loses it. A failed round is logged and skipped (a
gap in the charts), never fatal.

With `services` (the registry's service names), points of a service the registry does
not know, and of an edge whose destination it does not know or whose source it neither
knows nor reports as `unknown` (a caller outside the mesh), are not stored: the label
values come from the sidecars and must not make series of their own. The store also
caps the series (history.py); the first point it drops is logged once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any

from gossamer.logs import event
from gossamer.observe.history import HistoryStore, SeriesKey, points_from_pairs
from gossamer.observe.live import Pair, Scrape, Target
from gossamer.observe.scraper import LiveMetrics

log = logging.getLogger("gossamer.observe.history")
OUTSIDE = "unknown"  # the source_service of a caller without a mesh identity


def known_points(
    points: Mapping[SeriesKey, Any], services: Collection[str]
) -> dict[SeriesKey, Any]:
    """The points whose services are registered (see the module docstring)."""
    out = {}
    for key, point in points.items():
        kind, a, b = key
        known = a in services
        if kind == "edge":
            known = b in services and (known or a == OUTSIDE)
        if known:
            out[key] = point
    return out


class HistoryRecorder:
    def __init__(
        self,
        scraper: LiveMetrics,
        store: HistoryStore,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        services: Callable[[], Awaitable[Collection[str]]] | None = None,
    ) -> None:
        self.scraper = scraper
        self.store = store
        self.services = services
        self._told_dropped = False
        self.clock = clock
        self._sleep = sleep
        self._previous: dict[Target, Scrape] = {}
        self._task: asyncio.Task[None] | None = None
        self.rounds = 0
        self.failures = 0

    async def record_once(self) -> int:
        """One round: scrape, compute, append. Returns the number of series written."""
        at = self.clock()
        scrapes = await self.scraper.tick()
        pairs: list[Pair] = [(self._previous.get(s.target), s) for s in scrapes]
        listed = {s.target for s in scrapes}
        self._previous = {t: s for t, s in self._previous.items() if t in listed}
        self._previous.update((s.target, s) for s in scrapes if s.ok)
        points = points_from_pairs(pairs)
        if self.services is not None:
            points = known_points(points, await self.services())
        dropped = self.store.dropped
        self.store.append(at, points)
        self.rounds += 1
        if self.store.dropped > dropped and not self._told_dropped:
            self._told_dropped = True
            event(log, logging.WARNING, "metric history is full: new series are not recorded",
                  max_series=self.store.max_series)  # fmt: skip
        return len(points) - (self.store.dropped - dropped)

    async def run(self) -> None:
        step = self.store.step
        while True:
            await self._sleep(step - self.clock() % step)
            try:
                await self.record_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bad round is a gap, not the end of the history
                self.failures += 1
                event(log, logging.WARNING, "metric history round failed",
                      error=f"{type(exc).__name__}: {exc}")  # fmt: skip

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
