"""mesh.yaml's resilience policy, enforced by real sidecars under load, every request
counted: success-rate ejection moves traffic off a half-failing endpoint; a cluster's
circuit-breaker limits answer the overflow at once with 503 `overflow` while the
proxy's memory stays flat; an active health check takes an endpoint out and brings it
back while the registry still calls it healthy."""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.load import Load
from tests.helpers.procs import http_get, processes, wait_for
from tests.helpers.xds_mesh import XdsMesh, XdsSidecar, http_service, spiffe

pytestmark = pytest.mark.e2e

CATALOG = "outbound|8080||catalog"
ALLOW_WEB = {"allow": [spiffe("web")]}


_PROBES: Counter[int] = Counter()  # /hits requests made to each app (it counts them)


def hits(app_port: int) -> int:
    """Requests the app served, other than these /hits probes."""
    status, body = http_get(f"http://127.0.0.1:{app_port}/hits")
    assert status == 200
    _PROBES[app_port] += 1
    return int(body) - _PROBES[app_port]


def control(app_port: int, switch: str) -> None:
    assert http_get(f"http://127.0.0.1:{app_port}/control/{switch}")[0] == 200


def endpoint(web: XdsSidecar, sc: XdsSidecar) -> dict[str, Any]:
    return next(e for e in web.endpoints(CATALOG) if e["port"] == sc.inbound)


def window(load: Load, apps: list[int], requests: int) -> list[int]:
    """Requests each app served while the load made `requests` more."""
    before = [hits(p) for p in apps]
    start = load.result.total
    wait_for(lambda: load.result.total >= start + requests, timeout=30, what="load window")
    return [hits(p) - b for p, b in zip(apps, before, strict=True)]


def test_success_rate_ejection_moves_traffic_off_a_half_failing_endpoint(tmp_path: Path):
    services = [
        http_service("web"),
        http_service(
            "catalog",
            authorization=ALLOW_WEB,
            outlier_detection={
                "consecutive_5xx": 0,  # alternating failures never make 5 in a row anyway
                "interval": "1s",
                "base_ejection_time": "60s",
                "max_ejection_percent": 34,
                "success_rate": {"minimum_hosts": 3, "request_volume": 10, "stdev_factor": 1.0},
            },
        ),
    ]
    with processes() as procs:
        mesh = XdsMesh(tmp_path, procs, services)
        mesh.start_control()
        apps = [mesh.app(f"catalog-{i}") for i in range(3)]
        catalogs = [mesh.sidecar("catalog", port) for port in apps]
        web = mesh.sidecar("web")
        wait_for(lambda: len(web.endpoints(CATALOG)) == 3, what="three catalogs")
        load = Load(web.outbound, "catalog", "/", threads=3).start()
        spread = window(load, apps, 300)
        assert all(n >= 50 for n in spread), spread  # round robin over all three
        control(apps[2], "fail-half/on")
        failing_since = load.result.total
        started = time.monotonic()
        wait_for(
            lambda: web.metric("gossamer_outlier_ejections_total", reason="success_rate") >= 1,
            timeout=20,
            what="success-rate ejection",
        )
        print(f"success rate: ejected {time.monotonic() - started:.1f} s after failing began")
        assert endpoint(web, catalogs[2])["ejected"]
        assert not any(endpoint(web, sc)["ejected"] for sc in catalogs[:2])
        failures_before = load.result.statuses[500]
        after = window(load, apps, 400)
        failures_during = load.result.statuses[500] - failures_before
        result = load.stop()
        # traffic moved away: the ejected endpoint gets at most what was in flight
        assert after[2] <= 3 and after[0] + after[1] >= 390, after
        assert failures_during <= 3
        print(f"success rate: per-instance before {spread}, after ejection {after}")
        assert 0 < result.statuses[500] < (result.total - failing_since) / 2
        # every request counted: each one reached an app, none failed in transit
        assert result.errors == [], result.errors[:3]
        assert set(result.statuses) <= {200, 500}, result.statuses
        assert sum(hits(p) for p in apps) == result.total
        assert web.metric("gossamer_outlier_ejections_total", reason="success_rate") == 1


def _burst(port: int, clients: int, path: str) -> list[tuple[int, str, float]]:
    """`clients` simultaneous GETs on their own connections: (status, error, seconds)."""
    barrier = threading.Barrier(clients)
    out: list[tuple[int, str, float]] = []
    lock = threading.Lock()

    def one() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
        conn.connect()
        barrier.wait()
        start = time.monotonic()
        try:
            conn.request("GET", path, headers={"Host": "catalog"})
            resp = conn.getresponse()
            resp.read()
            item = (resp.status, resp.getheader("x-gossamer-error") or "", 0.0)
        except (OSError, http.client.HTTPException) as exc:
            item = (0, repr(exc), 0.0)
        finally:
            conn.close()
        with lock:
            out.append((item[0], item[1], time.monotonic() - start))

    threads = [threading.Thread(target=one) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return out


def vm_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_overflow_is_answered_at_once_and_memory_stays_flat(tmp_path: Path):
    services = [
        http_service("web"),
        http_service(
            "catalog",
            authorization=ALLOW_WEB,
            circuit_breakers={"max_connections": 4, "max_pending_requests": 2},
        ),
    ]
    clients, rounds, delay = 40, 7, 1.0
    with processes() as procs:
        mesh = XdsMesh(tmp_path, procs, services)
        mesh.start_control()
        app = mesh.app("catalog-0")
        mesh.sidecar("catalog", app)
        web = mesh.sidecar("web")
        wait_for(lambda: len(web.endpoints(CATALOG)) == 1, what="catalog")
        breaker = next(
            c for c in web.admin_json("/clusters")["clusters"] if c["name"].startswith(CATALOG)
        )["circuit_breaker"]
        assert breaker["max_connections"] == 4 and breaker["max_pending_requests"] == 2
        rss = []
        slowest_overflow = 0.0
        total = served = overflowed = 0
        for _ in range(rounds):
            results = _burst(web.outbound, clients, f"/slow/{int(delay * 1000)}")
            total += len(results)
            ok = [r for r in results if r[0] == 200]
            over = [r for r in results if r[0] == 503 and r[1] == "overflow"]
            assert len(ok) + len(over) == clients, results
            # 4 connections and 2 pending requests: 6 served, the rest refused at once
            assert len(ok) == 6, sorted(results)
            assert max(r[2] for r in over) < delay / 2, sorted(r[2] for r in over)
            assert min(r[2] for r in ok) >= delay * 0.9
            served += len(ok)
            overflowed += len(over)
            slowest_overflow = max(slowest_overflow, *(r[2] for r in over))
            rss.append(vm_rss_kb(web.process.pid))
        assert total == rounds * clients
        assert hits(app) == served
        assert (
            web.metric(
                "gossamer_circuit_breaker_overflows_total",
                destination_service="catalog",
                limit="max_pending_requests",
            )
            == overflowed
        )
        print(f"overflow: slowest 503 {slowest_overflow * 1000:.1f} ms; VmRSS kB {rss}")
        # memory: flat across rounds once warm (first two rounds allocate the pools)
        assert rss[-1] - rss[1] < 3 * 1024, rss
        state = next(
            c for c in web.admin_json("/clusters")["clusters"] if c["name"].startswith(CATALOG)
        )["circuit_breaker"]
        assert state["pending"] == 0 and state["requests"] == 0 and state["connections"] <= 4


def test_active_health_check_takes_an_endpoint_out_and_back(tmp_path: Path):
    services = [
        http_service("web"),
        http_service(
            "catalog",
            authorization=ALLOW_WEB,
            health_check={
                "http_path": "/healthz",
                "interval": "300ms",
                "timeout": "250ms",
                "unhealthy_threshold": 2,
                "healthy_threshold": 2,
            },
        ),
    ]
    with processes() as procs:
        mesh = XdsMesh(tmp_path, procs, services)
        mesh.start_control()
        apps = [mesh.app(f"catalog-{i}") for i in range(2)]
        catalogs = [mesh.sidecar("catalog", port) for port in apps]
        web = mesh.sidecar("web")
        wait_for(lambda: len(web.endpoints(CATALOG)) == 2, what="two catalogs")
        load = Load(web.outbound, "catalog", "/", threads=2).start()
        assert all(n >= 30 for n in window(load, apps, 200))
        control(apps[1], "health/fail")
        wait_for(
            lambda: endpoint(web, catalogs[1])["health_check_failed"],
            timeout=10,
            what="the failing check to take catalog-1 out",
        )
        # the registry still says healthy: only the active check took it out
        assert endpoint(web, catalogs[1])["health"] == "healthy"
        out = window(load, apps, 300)
        assert out[1] <= 2 and out[0] >= 290, out
        control(apps[1], "health/ok")
        wait_for(
            lambda: not endpoint(web, catalogs[1])["health_check_failed"],
            timeout=10,
            what="catalog-1 back in",
        )
        back = window(load, apps, 300)
        result = load.stop()
        assert back[1] >= 100, back
        assert result.errors == [], result.errors[:3]
        assert set(result.statuses) == {200}, result.statuses
        assert sum(hits(p) for p in apps) == result.total
        assert (
            web.metric("gossamer_health_check_failures_total", destination_service="catalog") >= 2
        )
