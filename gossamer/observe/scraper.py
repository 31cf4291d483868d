"""Scrape the sidecars' /metrics (their metrics ports) on demand and keep a short history (asyncio).

Used by the control plane when no Prometheus is configured. Scraping happens when
someone asks (the CLI, the dashboard's polling), at most once per `min_interval`, and
every history step (`tick`, called by recorder.py, whose scrapes the questions reuse); each
target keeps the scrapes of the last `keep` seconds: all of the last `dense` seconds,
and older ones at least `sparse` seconds apart (a window longer than `dense` starts at
most `sparse` seconds later than asked; the rate divides by the real time between the
two scrapes). So a target keeps at most about dense/min_interval + keep/sparse scrapes
(80 with the defaults) however often the dashboard polls. A rate needs two scrapes, so the
very first question scrapes, waits `min_interval`, and scrapes again. The figures
themselves are computed by live.py from the (oldest in window, newest) pair of each
target.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from gossamer.discovery.model import RegistryState
from gossamer.observe.live import Pair, Scrape, Target, parse_exposition
from gossamer.observe.packed import pack

MAX_BODY = 8 << 20


def targets_of(state: RegistryState) -> list[Target]:
    """Every registered endpoint whose sidecar has a metrics port (never the admin
    port: it listens on 127.0.0.1, inside the sidecar's network namespace)."""
    out = []
    for e in sorted(state.endpoints.values(), key=lambda e: (str(e.service), e.instance_id)):
        if e.metrics_port is None:
            continue
        host = f"[{e.address}]" if ":" in e.address else e.address
        out.append(
            Target(e.service.name, e.service.namespace, e.instance_id, f"{host}:{e.metrics_port}")
        )
    return out


Fetch = Callable[[Target], Awaitable[str]]


class LiveMetrics:
    def __init__(
        self,
        targets: Callable[[], Awaitable[list[Target]]],
        *,
        min_interval: float = 1.0,
        keep: float = 600.0,
        dense: float = 60.0,
        sparse: float = 30.0,
        timeout: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        fetch: Fetch | None = None,
    ) -> None:
        self._targets = targets
        self.min_interval = min_interval
        self.keep = keep
        self.dense = dense
        self.sparse = sparse
        self.timeout = timeout
        self._clock = clock
        self._sleep = sleep
        self._fetch = fetch or self._http_fetch
        self._history: dict[Target, collections.deque[Scrape]] = {}
        self._lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None
        self.scrapes = 0

    async def _http_fetch(self, target: Target) -> str:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        async with self._session.get(target.url) as resp:
            if resp.status != 200:
                raise OSError(f"HTTP {resp.status}")
            body = await resp.content.read(MAX_BODY + 1)
            if len(body) > MAX_BODY:
                raise OSError("the metrics page is larger than 8 MiB")
            return body.decode("utf-8", errors="replace")

    async def _scrape(self, target: Target) -> Scrape:
        try:
            text = await asyncio.wait_for(self._fetch(target), self.timeout)
            samples = parse_exposition(text)
        except (OSError, TimeoutError, aiohttp.ClientError, ValueError) as exc:
            return Scrape(target, self._clock(), error=f"{type(exc).__name__}: {exc}")
        return Scrape(target, self._clock(), samples)

    async def _scrape_all(self, targets: list[Target]) -> None:
        scrapes = await asyncio.gather(*(self._scrape(t) for t in targets))
        self.scrapes += 1
        live = set(targets)
        for gone in [t for t in self._history if t not in live]:
            del self._history[gone]
        for scrape in scrapes:
            history = self._history.setdefault(scrape.target, collections.deque())
            if scrape.ok:  # kept packed, sharing the layout of the last good scrape
                previous = next((s.samples for s in reversed(history) if s.ok), None)
                scrape.samples = pack(scrape.samples, previous)
            history.append(scrape)
            self._thin(history, scrape.at)

    def _thin(self, history: collections.deque[Scrape], now: float) -> None:
        """Drop scrapes older than `keep`, and those older than `dense` closer than
        `sparse` to the previous one kept (the oldest of each such run stays)."""
        while history and history[0].at < now - self.keep:
            history.popleft()
        if len(history) < 3 or history[1].at >= now - self.dense:
            return
        kept: list[Scrape] = []
        for scrape in history:
            old = scrape.at < now - self.dense
            if old and kept and scrape.at - kept[-1].at < self.sparse and kept[-1].ok:
                continue
            kept.append(scrape)
        if len(kept) != len(history):
            history.clear()
            history.extend(kept)

    def _newest_at(self) -> float | None:
        stamps = [h[-1].at for h in self._history.values() if h]
        return min(stamps) if stamps else None

    def _baseline(self, target: Target, window: float) -> Scrape | None:
        """The oldest good scrape of `target` within `window` before its newest."""
        history = self._history.get(target)
        if not history:
            return None
        newest = history[-1]
        return next((s for s in history if s.ok and newest.at - window <= s.at < newest.at), None)

    def _missing_baseline(self, targets: list[Target], window: float) -> bool:
        return any(
            self._history[t][-1].ok and self._baseline(t, window) is None
            for t in targets
            if self._history.get(t)
        )

    async def refresh(self, window: float | None) -> list[Target]:
        """Scrape if the newest scrape is older than `min_interval`; make sure every
        answering target has a second scrape within `window` (waiting `min_interval`
        for it when there is none, e.g. on the first call)."""
        async with self._lock:
            targets = await self._targets()
            newest = self._newest_at()
            known = all(t in self._history for t in targets)
            if newest is None or not known or self._clock() - newest >= self.min_interval:
                await self._scrape_all(targets)
            if window is not None and self._missing_baseline(targets, window):
                await self._sleep(self.min_interval)
                await self._scrape_all(targets)
            return targets

    async def tick(self) -> list[Scrape]:
        """Scrape every target now (the history's periodic scrape, recorder.py) and
        return the new scrapes; they also serve `pairs`/`latest` while fresh."""
        async with self._lock:
            targets = await self._targets()
            await self._scrape_all(targets)
            return [self._history[t][-1] for t in targets if self._history.get(t)]

    async def pairs(self, window: float) -> list[Pair]:
        """(oldest scrape within `window` of the newest, newest) for every target."""
        targets = await self.refresh(window)
        out: list[Pair] = []
        for target in targets:
            history = self._history.get(target)
            if history:
                out.append((self._baseline(target, window), history[-1]))
        return out

    async def latest(self) -> list[Scrape]:
        """The newest scrape of every target (scraping if stale)."""
        targets = await self.refresh(None)
        return [self._history[t][-1] for t in targets if self._history.get(t)]

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
