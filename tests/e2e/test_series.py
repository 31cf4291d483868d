"""`gossamer series` and `/v1/series` on real processes: a real `gossamer control` whose
embedded history scrapes real sidecars every 2 s, traffic of a known shape (a known
rate, one request in five answered 500 by the app), read back through the CLI and the
API: the rate within 25%, the success rate 0.8 within 0.05, the edge by direction, and
a 400 naming the parameter for each bad parameter. A real Prometheus scrapes the same
sidecars during the same traffic, and a second control plane with
`observability.prometheus_url` reads the same answers from Prometheus' range API.
"""

from __future__ import annotations

import json
import time
import urllib.request
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import pytest

from tests.helpers.operator_api import api_call
from tests.helpers.procs import processes, run_gossamer, wait_for
from tests.helpers.xds_mesh import XdsMesh, XdsSidecar, http_service

pytestmark = pytest.mark.e2e

STEP = 2.0
RATE = 20.0  # requests a second
DRIVE = 36.0  # seconds: a whole 10 s bucket, and Prometheus' 30 s rate window plus scrapes


@dataclass
class Drive:
    start: float = 0.0
    end: float = 0.0
    sent: int = 0
    ok: int = 0

    @property
    def rate(self) -> float:
        return self.sent / (self.end - self.start)


def drive(web: XdsSidecar, seconds: float, rate: float) -> Drive:
    """`rate` requests a second from web's app to catalog for `seconds`, paced: four
    `GET /` then one `GET /status/500`, over and over; every tenth turn also one
    `GET /status/500` to vault (not counted: vault fails every request)."""
    result = Drive(start=time.time())
    next_at = time.monotonic()
    deadline = next_at + seconds
    while time.monotonic() < deadline:
        path = "/status/500" if result.sent % 5 == 4 else "/"
        status, _ = web.get("catalog", path)
        if result.sent % 10 == 9:
            web.get("vault", "/status/500")
        result.sent += 1
        result.ok += status == 200
        next_at += 1.0 / rate
        time.sleep(max(0.0, next_at - time.monotonic()))
    result.end = time.time()
    return result


def series(mesh: XdsMesh, token: str, *args: str) -> dict[str, Any]:
    out = run_gossamer(
        "series", *args, "--api", f"http://127.0.0.1:{mesh.ports['api']}", "--token", token,
        "-o", "json",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    body: dict[str, Any] = json.loads(out.stdout)
    return body


def inside(body: dict[str, Any], d: Drive) -> list[float | None]:
    """The values of points whose whole interval (t - step, t] lies in the drive."""
    step = body["step_s"]
    return [v for t, v in body["points"] if t - step >= d.start and t <= d.end]


@pytest.fixture(scope="module")
def driven(tmp_path_factory):
    from tests.helpers.prometheus import PrometheusServer, config_text

    tmp = tmp_path_factory.mktemp("series")
    with processes() as procs:
        (tmp / "prometheus").mkdir()
        prom = PrometheusServer(tmp / "prometheus", "")
        services = [http_service("web"), http_service("catalog"), http_service("vault")]
        mesh = XdsMesh(tmp, procs, services)
        mesh.observability = {"history": "10m", "history_step": f"{STEP:g}s"}
        mesh.set_services(mesh.services)
        mesh.start_control()
        catalog = mesh.sidecar("catalog", mesh.app("catalog-0"))
        vault = mesh.sidecar("vault", mesh.app("vault-0"))
        web = mesh.sidecar("web")
        targets = [f"127.0.0.1:{sc.metrics}" for sc in (catalog, vault, web)]
        prom.config_path.write_text(config_text(None, static_targets=targets))
        prom.start()  # scrapes every second
        try:
            wait_for(lambda: web.get("catalog", "/")[0] == 200, timeout=30, what="web -> catalog")
            # vault answers every request 500; Prometheus sees its counters before they
            # rise (a rate needs that), so its success rate reads 0, not "no data"
            wait_for(lambda: web.get("vault", "/status/500")[0] == 500, timeout=30,
                     what="web -> vault")  # fmt: skip
            time.sleep(2 * STEP)  # every sidecar scraped once: the drive's first point has a rate
            d = drive(web, DRIVE, RATE)
            time.sleep(STEP + 1)  # the tick after the drive's end (and Prometheus' last scrapes)
            token = (tmp / "data" / "admin-token").read_text().strip()
            yield mesh, token, d, prom
        finally:
            prom.stop()


def test_service_rate_and_success_rate(driven):
    mesh, token, d, _ = driven
    assert d.rate > RATE * 0.5, f"the machine could only send {d.rate:.1f}/s"
    body = series(mesh, token, "catalog", "--metric", "rps", "--range", "5m", "--step", "2s")
    assert body["service"] == "catalog" and body["source"] == "live" and body["step_s"] == 2
    assert body["range_s"] == 300
    rates = [v for v in inside(body, d) if v is not None]
    assert len(rates) >= 4, body["points"]
    assert all(v > 0 for v in rates)
    mean = sum(rates) / len(rates)
    assert d.rate * 0.75 <= mean <= d.rate * 1.25, (mean, d.rate, rates)

    body = series(mesh, token, "catalog", "--metric", "success_rate", "--range", "5m",
                  "--step", "2s")  # fmt: skip
    ratios = [v for v in inside(body, d) if v is not None]
    assert len(ratios) >= 4
    assert 0.75 <= sum(ratios) / len(ratios) <= 0.85, ratios
    assert d.ok / d.sent == pytest.approx(0.8, abs=0.01)

    # a coarser step averages the rates: one point per 10 s
    body = series(mesh, token, "catalog", "--metric", "rps", "--range", "5m", "--step", "10s")
    times = [t for t, _ in body["points"]]
    assert len(times) >= 2 and all(b - a == 10 for a, b in pairwise(times))
    coarse = inside(body, d)
    assert coarse and all(d.rate * 0.75 <= v <= d.rate * 1.25 for v in coarse), coarse

    body = series(mesh, token, "catalog", "--metric", "latency_p99_ms", "--range", "1m")
    latencies = [v for v in inside(body, d) if v is not None]
    assert latencies and all(0 < v < 10_000 for v in latencies)


def test_edge_series_by_direction(driven):
    mesh, token, d, _ = driven
    inbound = series(mesh, token, "catalog", "--peer", "web", "--direction", "inbound",
                     "--metric", "rps", "--range", "5m", "--step", "2s")  # fmt: skip
    outbound = series(mesh, token, "web", "--peer", "catalog", "--direction", "outbound",
                      "--metric", "rps", "--range", "5m", "--step", "2s")  # fmt: skip
    assert inbound["peer"] == "web" and inbound["direction"] == "inbound"
    a = [v for v in inside(inbound, d) if v is not None]
    b = [v for v in inside(outbound, d) if v is not None]
    assert a and a == b  # the same edge, web -> catalog
    assert d.rate * 0.75 <= sum(a) / len(a) <= d.rate * 1.25
    # catalog calls nobody: its outbound edge to web has no series
    none = series(mesh, token, "catalog", "--peer", "web", "--direction", "outbound",
                  "--metric", "rps", "--range", "5m")  # fmt: skip
    assert none["points"] == []


def test_chart_on_the_terminal_path(driven):
    mesh, token, _, _ = driven
    out = run_gossamer("series", "catalog", "--metric", "success_rate", "--range", "1m",
                       "--api", f"http://127.0.0.1:{mesh.ports['api']}", "--token", token)  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("catalog success rate, last 1m, step 2s (live)")
    assert any("┤" in line and "%" in line for line in lines)
    assert lines[-1].startswith("min ") and " last " in lines[-1]


def test_bad_parameters_are_400_through_the_real_api(driven):
    mesh, token, _, _ = driven
    port = mesh.ports["api"]
    cases = {
        "service=catalog&metric=qps": "metric",
        "metric=rps": "service",
        "service=catalog&metric=rps&range=1h": "range",
        "service=catalog&metric=rps&range=soon": "range",
        "service=catalog&metric=rps&step=1s": "step",
        "service=catalog&peer=web&direction=sideways&metric=rps": "direction",
    }
    for query, field in cases.items():
        status, body = api_call(port, f"/v1/series?{query}", token)
        assert status == 400, (query, body)
        assert body["error"].startswith(f"{field}: "), body
    status, _ = api_call(port, "/v1/series?service=catalog&metric=rps", None)
    assert status == 401
    status, info = api_call(port, "/v1/series/info", token)
    assert status == 200 and info["length_s"] == 600 and info["step_s"] == STEP
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        metrics = r.read().decode()  # the control plane's own metrics count the series
    counted = next(float(line.split()[-1]) for line in metrics.splitlines()
                   if line.startswith("gossamer_control_history_series "))  # fmt: skip
    assert counted >= 3  # catalog, web, web -> catalog
    assert "gossamer_control_history_points_dropped_total 0.0" in metrics
    out = run_gossamer("series", "catalog", "--range", "1h",
                       "--api", f"http://127.0.0.1:{port}", "--token", token)  # fmt: skip
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "range: 1h is longer than the history holds (600s)" in out.stderr


def test_range_path_through_a_real_prometheus(driven, tmp_path):
    """With observability.prometheus_url, /v1/series asks Prometheus' range API (no
    history in the control plane); `gossamer series --prometheus` asks it directly.
    Prometheus scraped the sidecars' metrics ports every second during the drive; a
    second `gossamer control` of the same mesh.yaml services, with prometheus_url,
    answers from it. A service whose every request fails has a success rate of 0."""
    mesh, _, d, prom = driven
    plane = XdsMesh(tmp_path, mesh.procs, mesh.services)
    plane.observability = {"prometheus_url": prom.url}
    plane.set_services(plane.services)
    plane.start_control()
    token = (tmp_path / "data" / "admin-token").read_text().strip()
    port = plane.ports["api"]
    status, body = api_call(port, "/v1/series?service=catalog&metric=rps&range=5m&step=5s", token)
    assert status == 200 and body["source"] == "prometheus", body
    steady = [v for t, v in body["points"] if d.start + 31 <= t <= d.end and v]
    assert steady, body["points"]
    mean = sum(steady) / len(steady)
    assert d.rate * 0.75 <= mean <= d.rate * 1.25, (mean, d.rate)
    status, info = api_call(port, "/v1/series/info", token)
    assert status == 200 and info["source"] == "prometheus"
    status, bad = api_call(port, "/v1/series?service=catalog&metric=qps", token)
    assert status == 400 and bad["error"].startswith("metric: ")

    out = run_gossamer("series", "catalog", "--peer", "web", "--metric", "success_rate",
                       "--range", "5m", "--step", "5s", "--prometheus", prom.url,
                       "-o", "json")  # fmt: skip
    assert out.returncode == 0, out.stderr
    edge = json.loads(out.stdout)
    assert edge["source"] == "prometheus" and edge["direction"] == "inbound"
    ratios = [v for t, v in edge["points"] if d.start + 31 <= t <= d.end and v]
    assert ratios and all(0.75 <= v <= 0.85 for v in ratios), ratios

    query = "/v1/series?service=vault&metric=success_rate&range=5m&step=5s"
    status, failing = api_call(port, query, token)
    assert status == 200, failing
    seen = [v for _, v in failing["points"] if v is not None]
    assert seen and all(v == 0 for v in seen), failing["points"]
