"""`gossamer proxy --probe-path`: an HTTP readiness probe of the app, on real processes.

Three catalog instances (real apps, tests/helpers/echo_app.py, behind real sidecars with
`--probe-path /healthz`) and a web sidecar sending steady load. When one app's /healthz
turns 503 (/control/health/fail), its sidecar's probe fails `failure_threshold` (3)
times in a row: the sidecar's /ready names the app, the registration reports the
instance unhealthy, so the control plane's `/v1/endpoints` says `unhealthy`, web's EDS
(its /clusters) marks the endpoint unhealthy and web stops sending it traffic. When
/healthz answers 200 again, all of that reverses. What the code promises:
proxy/agent/app_probe.py, proxy/agent/session.py (`on_change` -> `set_health`),
control/translate/endpoints.py (unhealthy -> EDS UNHEALTHY); README "healthy (its
registered health follows the app's readiness probe)".
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.load import Load
from tests.helpers.operator_api import api_call
from tests.helpers.procs import http_get, processes, wait_for
from tests.helpers.xds_mesh import XdsMesh, XdsSidecar, http_service

pytestmark = pytest.mark.e2e

CATALOG = "outbound|8080||catalog"
_PROBES: Counter[int] = Counter()


def hits(app_port: int) -> int:
    """Requests the app served, other than these /hits requests (the app counts them;
    /healthz probes are not counted)."""
    status, body = http_get(f"http://127.0.0.1:{app_port}/hits")
    assert status == 200
    _PROBES[app_port] += 1
    return int(body) - _PROBES[app_port]


def switch(app_port: int, what: str) -> None:
    assert http_get(f"http://127.0.0.1:{app_port}/control/health/{what}")[0] == 200


def registry_health(mesh: XdsMesh, instance: str) -> str:
    token = (mesh.tmp / "data" / "admin-token").read_text().strip()
    status, body = api_call(mesh.ports["api"], "/v1/endpoints?service=catalog", token)
    assert status == 200, body
    found = [e for e in body["endpoints"] if e["instance_id"] == instance]
    assert len(found) == 1, body
    return str(found[0]["health"])


def eds_health(web: XdsSidecar, sc: XdsSidecar) -> str:
    found: list[dict[str, Any]] = [e for e in web.endpoints(CATALOG) if e["port"] == sc.inbound]
    assert len(found) == 1, web.endpoints(CATALOG)
    return str(found[0]["health"])


def window(load: Load, apps: list[int], requests: int) -> list[int]:
    """Requests each app served while the load made `requests` more."""
    before = [hits(p) for p in apps]
    start = load.result.total
    wait_for(lambda: load.result.total >= start + requests, timeout=60, what="load window")
    return [hits(p) - b for p, b in zip(apps, before, strict=True)]


def test_http_probe_takes_the_instance_out_of_the_registry_and_back(tmp_path: Path):
    with processes() as procs:
        mesh = XdsMesh(tmp_path, procs, [http_service("web"), http_service("catalog")])
        mesh.start_control()
        apps = [mesh.app(f"catalog-{i}") for i in range(3)]
        catalogs = [
            mesh.sidecar("catalog", port, extra=["--probe-path", "/healthz"]) for port in apps
        ]
        web = mesh.sidecar("web")
        wait_for(lambda: len(web.endpoints(CATALOG)) == 3, timeout=30, what="three catalogs")
        flaky, flaky_app = catalogs[0], apps[0]
        assert registry_health(mesh, flaky.instance) == "healthy"
        load = Load(web.outbound, "catalog", "/", threads=2).start()
        try:
            assert all(n >= 20 for n in window(load, apps, 200))

            switch(flaky_app, "fail")
            wait_for(
                lambda: registry_health(mesh, flaky.instance) == "unhealthy",
                timeout=30,
                what="the registry to call the failing instance unhealthy",
            )
            wait_for(lambda: eds_health(web, flaky) == "unhealthy", timeout=30, what="web's EDS")
            status, body = flaky.admin_get("/ready")
            assert status == 503 and b"app (answered HTTP/1.1 503" in body, body
            # the other two stay healthy, and only they get traffic now
            assert [registry_health(mesh, c.instance) for c in catalogs[1:]] == ["healthy"] * 2
            out = window(load, apps, 300)
            assert out[0] == 0 and min(out[1:]) >= 50, out

            switch(flaky_app, "ok")
            wait_for(
                lambda: registry_health(mesh, flaky.instance) == "healthy",
                timeout=30,
                what="the registry to call the instance healthy again",
            )
            wait_for(lambda: eds_health(web, flaky) == "healthy", timeout=30, what="web's EDS")
            assert flaky.ready()
            back = window(load, apps, 300)
            assert back[0] >= 30, back
        finally:
            result = load.stop()
        # nothing failed while the instance went out and came back
        assert result.errors == [], result.errors[:3]
        assert set(result.statuses) == {200}, result.statuses
