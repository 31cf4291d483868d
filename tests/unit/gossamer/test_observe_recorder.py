"""The history recorder's rounds (fake scraper, clock and sleep) and `gossamer series`'s
own checks (`main` in-process; the real API and Prometheus paths: tests/e2e/test_series.py)."""

from __future__ import annotations

import asyncio

import pytest

from gossamer.cli.main import main
from gossamer.observe.history import HistoryStore, service_key
from gossamer.observe.live import Scrape, Target, parse_exposition
from gossamer.observe.recorder import HistoryRecorder
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
