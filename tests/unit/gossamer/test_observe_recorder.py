"""The history recorder's rounds (fake scraper, clock and sleep) and `gossamer series`'s
own checks (`main` in-process; the real API and Prometheus paths: tests/e2e/test_series.py)."""

from __future__ import annotations

import asyncio

import pytest

from gossamer.cli.main import main
from gossamer.observe.history import HistoryStore, edge_key, service_key
from gossamer.observe.live import Scrape, Target, parse_exposition
from gossamer.observe.recorder import HistoryRecorder, known_points
from gossamer.proxy.telemetry.metrics import SidecarMetrics

CAT = Target("catalog", "default", "catalog-1", "127.0.0.1:15001")


class FakeScraper:
    """Hands out scrapes of a real SidecarMetrics registry; `fail` makes a round raise."""

    def __init__(self) -> None:
        self.metrics = SidecarMetrics()
        self.at = 0.0
        self.fail = False

    async def tick(self) -> list[Scrape]:
        if self.fail:
            raise RuntimeError("registry unavailable")
        self.at += 10.0
        return [Scrape(CAT, self.at, parse_exposition(self.metrics.render().decode()))]


def serve(scraper: FakeScraper, n: int, failing_every: int = 0) -> None:
    series = scraper.metrics.requests("destination", "web", "catalog", "mutual_tls")
    for i in range(n):
        series.record(500 if failing_every and i % failing_every == 0 else 200, 0.003)


async def test_rounds_pair_each_scrape_with_the_previous_one():
    scraper = FakeScraper()
    store = HistoryStore(600, 10)
    now = [1_700_000_000.0]
    recorder = HistoryRecorder(scraper, store, clock=lambda: now[0])  # type: ignore[arg-type]
    assert await recorder.record_once() == 0  # one scrape: no rate yet
    serve(scraper, 100, failing_every=4)
    now[0] += 10
    await recorder.record_once()
    got = store.query(service_key("catalog"), "success_rate", 0, now[0], 10)
    assert [t for t, _ in got] == [now[0]] and got[0][1] == pytest.approx(0.75)
    assert store.query(service_key("catalog"), "rps", 0, now[0], 10)[-1][1] == 10.0


async def test_run_sleeps_to_the_step_boundary_and_survives_a_failed_round():
    scraper = FakeScraper()
    store = HistoryStore(600, 10)
    now = [1_700_000_003.0]
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds
        scraper.fail = len(sleeps) == 2  # the second round fails
        if len(sleeps) > 3:
            raise asyncio.CancelledError

    recorder = HistoryRecorder(scraper, store, clock=lambda: now[0], sleep=sleep)  # type: ignore[arg-type]
    with pytest.raises(asyncio.CancelledError):
        await recorder.run()
    assert sleeps[0] == pytest.approx(7.0)  # to 1_700_000_010
    assert all(s == pytest.approx(10.0) for s in sleeps[1:])
    assert (recorder.rounds, recorder.failures) == (2, 1)


class TwoSidecars:
    """Two catalog sidecars, each answering 10 requests a second; `down` fails a
    sidecar's scrape this round (as LiveMetrics.tick reports it: a Scrape with error)."""

    def __init__(self) -> None:
        self.targets = [CAT, Target("catalog", "default", "catalog-2", "127.0.0.1:15002")]
        self.metrics = [SidecarMetrics(), SidecarMetrics()]
        self.at = 0.0
        self.down: set[int] = set()
        self.gone: set[int] = set()

    async def tick(self) -> list[Scrape]:
        self.at += 10.0
        out = []
        for i, (target, metrics) in enumerate(zip(self.targets, self.metrics, strict=True)):
            if i in self.gone:
                continue
            series = metrics.requests("destination", "web", "catalog", "mutual_tls")
            for _ in range(100):
                series.record(200, 0.003)
            if i in self.down:
                out.append(Scrape(target, self.at, error="TimeoutError: "))
            else:
                out.append(Scrape(target, self.at, parse_exposition(metrics.render().decode())))
        return out


async def test_a_missed_scrape_counts_the_next_one_over_both_intervals():
    scraper = TwoSidecars()
    store = HistoryStore(600, 10)
    now = [1_700_000_000.0]
    recorder = HistoryRecorder(scraper, store, clock=lambda: now[0])  # type: ignore[arg-type]
    for round_ in range(6):
        scraper.down = {1} if round_ == 2 else set()
        await recorder.record_once()
        now[0] += 10
    got = [v for _, v in store.query(service_key("catalog"), "rps", 0, now[0], 10)]
    # round 2: only catalog-1 answered (a dip in that point is all one can know); round 3
    # counts catalog-2's 20 s since its last good scrape: no second dip
    assert got == [20.0, 10.0, 20.0, 20.0, 20.0]
    scraper.gone = {1}  # a target no longer listed loses its baseline
    await recorder.record_once()
    assert set(recorder._previous) == {CAT}


async def test_only_registered_services_make_series_and_the_cap_is_told_once(caplog):
    scraper = FakeScraper()
    metrics = scraper.metrics
    for caller in ("web", "unknown", "forged-1", "forged-2"):
        metrics.requests("destination", caller, "catalog", "mutual_tls").record(200, 0.003)
    metrics.requests("destination", "web", "not-registered", "mutual_tls").record(200, 0.003)
    store = HistoryStore(600, 10, max_series=2)
    now = [1_700_000_000.0]

    async def services() -> set[str]:
        return {"web", "catalog"}

    recorder = HistoryRecorder(scraper, store, clock=lambda: now[0], services=services)  # type: ignore[arg-type]
    for _ in range(3):
        for caller in ("web", "unknown", "forged-1", "forged-2"):
            metrics.requests("destination", caller, "catalog", "mutual_tls").record(200, 0.003)
        metrics.requests("destination", "web", "not-registered", "mutual_tls").record(200, 0.003)
        now[0] += 10
        await recorder.record_once()
    # known: service catalog, edges web -> catalog and unknown -> catalog (outside callers);
    # the cap of 2 keeps the first two (sorted order is not promised: count them)
    assert len(store) == 2 and store.dropped == 2  # rounds 2 and 3 drop one point each
    kept = store.keys()
    assert all(key[1] not in ("forged-1", "forged-2", "not-registered") for key in kept)
    assert all(key[2] != "not-registered" for key in kept)
    told = [r for r in caplog.records if "metric history is full" in r.getMessage()]
    assert len(told) == 1


def test_known_points():
    points: dict[tuple[str, str, str], dict[str, float]] = {
        service_key("catalog"): {},
        service_key("ghost"): {},
        edge_key("web", "catalog"): {},
        edge_key("unknown", "catalog"): {},
        edge_key("ghost", "catalog"): {},
        edge_key("web", "ghost"): {},
    }
    assert set(known_points(points, {"web", "catalog"})) == {
        service_key("catalog"),
        edge_key("web", "catalog"),
        edge_key("unknown", "catalog"),
    }


def run_cli(capsys, *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as done:
        main(list(args))
    captured = capsys.readouterr()
    return int(done.value.code or 0), captured.out + captured.err


def test_series_cli_checks_before_asking(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no mesh.yaml here
    code, text = run_cli(capsys, "series", "catalog", "--direction", "inbound")
    assert code != 0 and "--direction needs --peer" in text and "Traceback" not in text
    code, text = run_cli(capsys, "series", "catalog", "--metric", "qps")
    assert code == 2 and "qps" in text
    code, text = run_cli(
        capsys, "series", "catalog", "--prometheus", "http://127.0.0.1:9", "--range", "soon"
    )
    assert code != 0 and "--range:" in text and "Traceback" not in text
    code, text = run_cli(capsys, "series", "--help")
    assert code == 0 and "--window" not in text and "--peer" in text
