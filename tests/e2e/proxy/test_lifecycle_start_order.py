"""The app starting after its sidecar, or before it: both work. Requests that arrive
before what they need is there wait for it (`--hold-requests-until-ready`, 5 s by
default), then get a clear 503; with 0 they get it at once."""

from __future__ import annotations

import http.client
import time
from functools import partial

import pytest

from tests.helpers.load import Load
from tests.helpers.procs import free_port, port_open, processes, wait_for
from tests.helpers.xds_mesh import XdsMesh, XdsSidecar, http_service, spiffe

pytestmark = pytest.mark.e2e

# no retries anywhere: a request that failed would show up as a failure
SERVICES = [
    http_service("web"),
    http_service("catalog", authorization={"allow": [spiffe("web")]}),
    http_service("stock", authorization={"allow": [spiffe("web")]}),
    http_service("orders", authorization={"allow": [spiffe("web")]}),
]


def _get(port: int, host: str) -> tuple[int, str | None, bytes, float]:
    """GET / with `Host: host` on 127.0.0.1:port: status, x-gossamer-error, body, seconds."""
    start = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.request("GET", "/", headers={"Host": host})
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, resp.getheader("x-gossamer-error"), body, time.monotonic() - start
    finally:
        conn.close()


def _only_app_missing(sc: XdsSidecar) -> bool:
    missing = sc.admin_json("/ready")["missing"]
    return bool(missing) and all(m.startswith("app") for m in missing)


def _unhealthy_at(web: XdsSidecar, service: str) -> bool:
    return [e["health"] for e in web.endpoints(f"outbound|8080||{service}")] == ["unhealthy"]


def test_app_starting_after_its_sidecar(tmp_path):
    with processes() as procs:
        mesh = XdsMesh(tmp_path, procs, SERVICES)
        mesh.start_control()
        # three sidecars whose apps are not there: held 5 s (the default), 1 s, not at all
        later = free_port()
        catalog = mesh.sidecar("catalog", later, wait_ready=False)
        stock = mesh.sidecar(
            "stock", free_port(), wait_ready=False, extra=["--hold-requests-until-ready", "1"]
        )
        orders = mesh.sidecar(
            "orders", free_port(), wait_ready=False, extra=["--hold-requests-until-ready", "0"]
        )
        web = mesh.sidecar("web")
        for sc in (catalog, stock, orders):
            wait_for(partial(_only_app_missing, sc), timeout=30, what=sc.instance)
            # unhealthy at web, which balances over it anyway (panic: none is healthy)
            wait_for(partial(_unhealthy_at, web, sc.service), what=f"{sc.service} at web")

        # the bound, and failing at once: a clear 503 naming what is missing
        status, error, body, took = _get(web.outbound, "stock")
        assert (status, error) == (503, "app-not-ready"), body
        assert b"does not accept connections" in body
        assert 0.9 <= took < 4, took
        status, error, body, took = _get(web.outbound, "orders")
        assert (status, error) == (503, "app-not-ready"), body
        assert took < 0.8, took

        # requests to catalog wait at its sidecar until the app comes up
        load = Load(web.outbound, "catalog", "/", threads=3).start()

        def held() -> bool:
            found = web.endpoints("outbound|8080||catalog")
            return bool(found) and found[0]["active_requests"] >= 3

        wait_for(held, timeout=10, interval=0.02, what="requests held at catalog's sidecar")
        assert load.result.total == 0  # none answered yet
        mesh.app("catalog-0", later)
        wait_for(lambda: load.result.total >= 100, timeout=30, what="load after the app started")
        result = load.stop()
        assert result.errors == [], result.errors[:3]
        assert set(result.statuses) == {200}, result.statuses
        wait_for(catalog.ready, timeout=10, what="catalog's sidecar ready once its app is")

        # the app answered once; now it dies: no hold, a fast 502 (it will not come back
        # by waiting, and its probe takes the instance out of rotation)
        (app,) = [p for p in procs if "catalog-0" in p.args]
        app.stop()
        wait_for(lambda: not port_open(later), what="catalog's app to stop listening")
        status, error, body, took = _get(web.outbound, "catalog")
        assert (status, error) == (502, "connect-failure"), body
        assert took < 1.0, took


def test_app_starting_before_its_sidecar(tmp_path):
    with processes() as procs:
        mesh = XdsMesh(tmp_path, procs, SERVICES[:2])
        mesh.start_control()
        mesh.sidecar("catalog", mesh.app("catalog-0"))
        tokens = [mesh.token("web") for _ in range(2)]
        # the app is already sending when its sidecar starts: the sidecar's outbound
        # port opens before it has its certificate and configuration
        web = mesh.sidecar("web", wait_ready=False)
        wait_for(lambda: port_open(web.outbound), timeout=30, interval=0.01, what="outbound")
        load = Load(web.outbound, "catalog", "/", threads=3).start()
        missing = web.admin_json("/ready")["missing"]
        assert "configuration" in missing, missing  # the first requests came before it
        wait_for(lambda: load.result.total >= 100, timeout=30, what="load through web")
        result = load.stop()
        assert result.errors == [], result.errors[:3]
        assert set(result.statuses) == {200}, result.statuses

        # without a control plane no configuration comes: after the bound, a clear 503
        mesh.stop_control()
        slow = mesh.sidecar(
            "web", token=tokens[0], wait_ready=False, extra=["--hold-requests-until-ready", "1"]
        )
        fast = mesh.sidecar(
            "web", token=tokens[1], wait_ready=False, extra=["--hold-requests-until-ready", "0"]
        )
        for sc in (slow, fast):
            wait_for(partial(port_open, sc.outbound), timeout=30, what="outbound")
        status, error, body, took = _get(slow.outbound, "catalog")
        assert (status, error) == (503, "no-config"), body
        assert b"waited 1 s" in body
        assert 0.9 <= took < 4, took
        status, error, body, took = _get(fast.outbound, "catalog")
        assert (status, error) == (503, "no-config"), body
        assert took < 0.8, took
        assert slow.process.alive() and fast.process.alive()  # still waiting for it
