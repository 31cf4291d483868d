"""On-demand scraping with history, with an injected clock, sleep and fetch."""

from __future__ import annotations

import itertools

from gossamer.contract.identity import ServiceKey
from gossamer.discovery.model import Endpoint, RegistryState
from gossamer.observe.live import Target
from gossamer.observe.scraper import LiveMetrics, targets_of

KEY = ServiceKey("default", "catalog")
A = Target("catalog", "default", "a", "127.0.0.1:1")
B = Target("catalog", "default", "b", "127.0.0.1:2")
PAGE = '# TYPE gossamer_requests counter\ngossamer_requests_total{{reporter="destination"}} {n}\n'


class World:
    def __init__(self):
        self.now = 100.0
        self.targets = [A, B]
        self.counts = {A: 0, B: 0}
        self.down: set[Target] = set()
        self.fetches = 0
        self.slept: list[float] = []

    def clock(self):
        return self.now

    async def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds
        for t in self.counts:
            self.counts[t] += 10

    async def fetch(self, target):
        self.fetches += 1
        if target in self.down:
            raise OSError("connection refused")
        return PAGE.format(n=self.counts[target])

    async def list_targets(self):
        return list(self.targets)

    def live(self):
        return LiveMetrics(
            self.list_targets, clock=self.clock, sleep=self.sleep, fetch=self.fetch,
            min_interval=1.0, keep=60.0,
        )  # fmt: skip


async def test_first_question_waits_for_a_baseline_then_reuses_history():
    w = World()
    live = w.live()
    pairs = await live.pairs(30)
    assert w.slept == [1.0] and w.fetches == 4  # two rounds
    for old, new in pairs:
        assert old is not None and new.at - old.at == 1.0
        key = (("reporter", "destination"),)
        delta = (
            new.samples["gossamer_requests_total"][key]
            - old.samples["gossamer_requests_total"][key]
        )
        assert delta == 10
    # within min_interval: no new scrape, no wait
    await live.pairs(30)
    assert w.fetches == 4 and w.slept == [1.0]
    # later: one new scrape, the baseline is the oldest within the window
    w.now += 5
    pairs = await live.pairs(30)
    assert w.fetches == 6 and w.slept == [1.0]
    assert all(old is not None and old.at == 100.0 for old, _ in pairs)


async def test_a_dead_target_does_not_stall_everyone():
    w = World()
    w.down.add(B)
    live = w.live()
    pairs = dict((new.target, (old, new)) for old, new in await live.pairs(30))
    assert not pairs[B][1].ok and pairs[B][0] is None
    assert pairs[A][0] is not None
    w.now += 2
    await live.pairs(30)
    assert w.slept == [1.0]  # B's failure is not waited on again


async def test_targets_come_and_go():
    w = World()
    live = w.live()
    await live.pairs(30)
    w.targets = [A]
    w.now += 2
    assert [new.target for _, new in await live.pairs(30)] == [A]
    latest = await live.latest()
    assert [s.target for s in latest] == [A]


def test_targets_of_registry():
    state = RegistryState(
        1,
        endpoints={
            (KEY, "x"): Endpoint(KEY, "x", "10.0.0.1", 15006, admin_port=15000, metrics_port=15090),
            (KEY, "y"): Endpoint(KEY, "y", "fd00::1", 15006, admin_port=15000, metrics_port=15090),
            # a sidecar without a metrics port: its admin port (loopback) is never scraped
            (KEY, "w"): Endpoint(KEY, "w", "10.0.0.2", 15006, admin_port=15000),
            (KEY, "z"): Endpoint(KEY, "z", "10.0.0.3", 8080),  # static, no sidecar
        },
    )
    assert [t.url for t in targets_of(state)] == [
        "http://10.0.0.1:15090/metrics",
        "http://[fd00::1]:15090/metrics",
    ]


async def test_old_scrapes_are_thinned_however_often_one_asks():
    """Polled every second for 10 minutes: the last `dense` seconds stay whole, older
    scrapes at least `sparse` apart; a long window still finds a baseline near its start."""
    w = World()
    w.targets = [A]
    live = LiveMetrics(
        w.list_targets, clock=w.clock, sleep=w.sleep, fetch=w.fetch,
        min_interval=1.0, keep=600.0, dense=60.0, sparse=30.0,
    )  # fmt: skip
    for _ in range(900):
        await live.pairs(30)
        w.now += 1.0
    await live.pairs(30)
    kept = [s.at for s in live._history[A]]
    newest = kept[-1]
    recent = [t for t in kept if t >= newest - 60]
    old = [t for t in kept if t < newest - 60]
    assert len(recent) >= 60  # every scrape of the last minute
    assert all(b - a >= 30 for a, b in itertools.pairwise(old))
    assert len(kept) <= 60 + 600 / 30 + 2, len(kept)  # not 600
    assert kept[0] >= newest - 600
    (old_pair,) = await live.pairs(500)
    assert old_pair[0] is not None and newest - old_pair[0].at <= 500
    assert newest - old_pair[0].at >= 500 - 30  # starts at most `sparse` late
