"""The background task that fills the embedded history (asyncio; the I/O around history.py).

Every `step` seconds, on the step boundary of the wall clock, it scrapes every sidecar
through the live scraper (`LiveMetrics.tick`), pairs each target's new scrape with the
one of its previous tick, and appends `points_from_pairs` to the `HistoryStore` at the
tick's unix time. A target's first tick yields no rate yet (it needs two scrapes). A
failed round is logged and skipped (a gap in the charts), never fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from gossamer.logs import event
from gossamer.observe.history import HistoryStore, points_from_pairs
from gossamer.observe.live import Pair, Scrape, Target
from gossamer.observe.scraper import LiveMetrics

log = logging.getLogger("gossamer.observe.history")


class HistoryRecorder:
    def __init__(
        self,
        scraper: LiveMetrics,
        store: HistoryStore,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.scraper = scraper
        self.store = store
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
        self._previous = {s.target: s for s in scrapes if s.ok}
        points = points_from_pairs(pairs)
        self.store.append(at, points)
        self.rounds += 1
        return len(points)

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
