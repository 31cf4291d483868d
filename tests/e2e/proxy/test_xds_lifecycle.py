"""Instances come and go while traffic flows: a sidecar that stops deregisters and
leaves every peer's endpoints, one whose app dies is reported unhealthy, a new one
appears, killing one of three endpoints under steady load loses no GET, and a sidecar
started before its control plane waits for it."""

from __future__ import annotations

import signal
from typing import Any

import pytest

from gossamer.certs.ca import CertificateAuthority
from tests.helpers.load import Load
from tests.helpers.procs import processes, wait_for
from tests.helpers.xds_mesh import TD, XdsMesh, http_service, spiffe

pytestmark = pytest.mark.e2e

SERVICES = [
    http_service("web"),
    http_service(
        "catalog",
        retries={"attempts": 2, "on": ["connect-failure", "reset", 503]},
        authorization={"allow": [spiffe("web")]},
    ),
]
CATALOG = "outbound|8080||catalog"


def ports_of(endpoints: list[dict[str, Any]]) -> set[int]:
    return {e["port"] for e in endpoints}


def test_instances_join_leave_and_one_dies_under_load(tmp_path):
    with processes() as procs:
        mesh = XdsMesh(tmp_path, procs, SERVICES)
        mesh.start_control()
        catalogs = [mesh.sidecar("catalog", mesh.app(f"catalog-{i}")) for i in range(3)]
        web = mesh.sidecar("web")
        wait_for(
            lambda: ports_of(web.endpoints(CATALOG)) == {c.inbound for c in catalogs},
            what="web to know the three catalogs",
        )

        # a graceful stop: draining, then deregistered; peers drop it at once
        leaving = catalogs.pop(0)
        assert leaving.process.stop() == 0  # SIGTERM: a clean exit
        wait_for(
            lambda: ports_of(web.endpoints(CATALOG)) == {c.inbound for c in catalogs},
            timeout=10,
            what="the stopped instance to leave web's endpoints",
        )
        log = mesh.control.output() if mesh.control else ""
        assert "instance deregistered" in log

        # an app that stops answering: its sidecar reports it unhealthy, peers skip it;
        # back up, healthy again
        (app,) = [p for p in procs if "catalog-2" in p.args]
        app_port = int(app.args[app.args.index("--port") + 1])
        app.stop()
        sick = catalogs[-1]  # the sidecar of catalog-2

        def health_at_web() -> str:
            found = [e for e in web.endpoints(CATALOG) if e["port"] == sick.inbound]
            return str(found[0]["health"]) if found else "absent"

        wait_for(lambda: health_at_web() == "unhealthy", timeout=15, what="unhealthy at web")
        assert not sick.ready()
        mesh.app("catalog-2", app_port)
        wait_for(lambda: health_at_web() == "healthy", timeout=15, what="healthy again")

        # a new instance registers and appears
        newcomer = mesh.sidecar("catalog", mesh.app("catalog-new"))
        catalogs.append(newcomer)
        wait_for(
            lambda: ports_of(web.endpoints(CATALOG)) == {c.inbound for c in catalogs},
            what="the new instance in web's endpoints",
        )
        # EDS updates carry only the clusters that changed: the others are kept
        assert ports_of(web.endpoints("outbound|8080||web")) == {web.inbound}

        # steady load; one of the three sidecars is killed (no goodbye): no GET is lost
        load = Load(web.outbound, "catalog", "/", threads=4).start()
        wait_for(lambda: load.result.total >= 300, timeout=30, what="load to flow")
        victim = catalogs[1]
        victim.process.signal(signal.SIGKILL)
        victim.process.proc.wait(5)
        before = load.result.total
        wait_for(lambda: load.result.total >= before + 600, timeout=30, what="load after kill")
        result = load.stop()
        assert result.errors == [], result.errors[:3]
        assert set(result.statuses) == {200}, result.statuses
        assert web.metric("gossamer_retries_total", destination_service="catalog") >= 1
        # its lease runs out (3 s): the control plane removes it from web's endpoints
        wait_for(
            lambda: victim.inbound not in ports_of(web.endpoints(CATALOG)),
            timeout=15,
            what="the killed instance to leave after its lease",
        )


def test_a_sidecar_waits_for_an_unreachable_control_plane(tmp_path):
    with processes() as procs:
        mesh = XdsMesh(tmp_path, procs, SERVICES)
        CertificateAuthority.init(tmp_path / "ca", TD)  # the control plane will use it
        app = mesh.app("catalog-0")
        sc = mesh.sidecar("catalog", app, wait_ready=False)
        wait_for(
            lambda: "control plane unreachable; retrying" in sc.process.output(),
            timeout=20,
            what="the sidecar to say it retries",
        )
        ready = sc.admin_json("/ready")
        assert not ready["ready"]
        assert ready["missing"][:2] == ["certificate", "configuration"]
        assert sc.admin_get("/live")[0] == 200
        mesh.start_control()
        wait_for(sc.ready, timeout=30, what="ready once the control plane is up")
        assert sc.process.alive()
