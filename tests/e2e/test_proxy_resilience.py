"""Retries under failure, with real processes: an instance dies under steady load and no
GET is lost; when every instance fails, the retry budget keeps retries to a fraction."""

from __future__ import annotations

import signal
import time

import pytest

from tests.helpers.load import Load
from tests.helpers.mesh import Mesh, Sidecar, config_doc, upstream
from tests.helpers.procs import processes, wait_for

pytestmark = pytest.mark.e2e

RETRY = {
    "attempts": 3,
    "retry_on": ["connect-failure", "reset", 502, 503, 504],
    "budget_percent": 20,
    "min_retries_per_second": 10,
    "backoff_base": "5ms",
    "backoff_max": "50ms",
}
SERVICE_PORT = 8080


def catalogs(mesh: Mesh, n: int) -> list[tuple[int, Sidecar]]:
    out = []
    for i in range(n):
        app = mesh.app(f"catalog-{i}")
        sc = mesh.sidecar("catalog", config_doc("catalog", app_ports=[(SERVICE_PORT, "http", app)]))
        out.append((app, sc))
    return out


def web(mesh: Mesh, instances: list[tuple[int, Sidecar]]) -> Sidecar:
    eps = [("127.0.0.1", sc.inbound) for _, sc in instances]
    cfg = config_doc("web", upstreams=[upstream("catalog", eps, port=SERVICE_PORT, retry=RETRY)])
    return mesh.sidecar("web", cfg)


def test_killing_an_instance_under_load_loses_no_get(tmp_path):
    with processes() as procs:
        mesh = Mesh(tmp_path, procs)
        instances = catalogs(mesh, 3)
        client = web(mesh, instances)
        load = Load(client.outbound, f"catalog:{SERVICE_PORT}", threads=6).start()
        wait_for(lambda: load.result.total > 300, what="steady load")
        before_kill = load.result.total
        victim = instances[1][1]
        victim.process.signal(signal.SIGKILL)  # the sidecar: connections reset, port refuses
        victim.process.proc.wait(5)
        wait_for(
            lambda: load.result.total > before_kill + 600, timeout=30, what="load after the kill"
        )
        result = load.stop()
        assert result.errors == []
        assert set(result.statuses) == {200}, result.statuses
        retried = client.metric("gossamer_retries_total", destination_service="catalog")
        assert retried >= 1  # the requests that hit the dead instance were retried
        endpoints = client.admin_json("/clusters")["clusters"][0]["endpoints"]
        dead = next(e for e in endpoints if e["port"] == victim.inbound)
        assert dead["ejected"] or dead["consecutive_failures"] > 0


def test_retry_budget_stops_a_retry_storm(tmp_path):
    with processes() as procs:
        mesh = Mesh(tmp_path, procs)
        instances = catalogs(mesh, 3)
        client = web(mesh, instances)
        start = time.monotonic()
        load = Load(client.outbound, f"catalog:{SERVICE_PORT}", "/status/503", threads=6).start()
        wait_for(lambda: load.result.total >= 1000, timeout=60, what="1000 failing requests")
        result = load.stop()
        elapsed = time.monotonic() - start
        requests = result.total
        assert set(result.statuses) == {503}
        retried = client.metric("gossamer_retries_total", destination_service="catalog")
        exhausted = client.metric(
            "gossamer_retry_budget_exhausted_total", destination_service="catalog"
        )
        # without a budget: 2 retries per request. With it: in any 10 s window, 20% of the
        # window's requests plus a reserve of 10/s x 10 s; a run of `elapsed` seconds
        # overlaps at most elapsed // 10 + 2 windows' reserves.
        bound = 0.2 * requests + 100 * (elapsed // 10 + 2)
        assert retried <= bound, (retried, requests, elapsed)
        assert retried < 0.25 * (2 * requests), (retried, requests)
        assert retried >= 100  # the reserve was used: retries did happen
        assert exhausted > 0
        served = sum(
            sc.metric("gossamer_requests_total", reporter="destination", response_code="503")
            for _, sc in instances
        )
        assert served <= requests + retried + 10
