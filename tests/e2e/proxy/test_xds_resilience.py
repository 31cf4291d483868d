"""The control plane goes away and comes back, certificates are renewed, and a
port changes protocol: traffic carries on through all of it."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import pytest

from tests.helpers.load import Load
from tests.helpers.procs import gossamer_cmd, processes, wait_for
from tests.helpers.xds_mesh import XdsMesh, XdsSidecar, http_service, spiffe

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


def connected(sc: XdsSidecar) -> bool:
    return bool(sc.admin_json("/config_dump?resources=0")["xds"]["connected"])


def test_control_plane_outage_and_return_under_load(tmp_path):
    """30 s without the control plane under load: every request succeeds on the last
    good configuration; after it returns every sidecar reconnects and a catalog
    instance started after the return reaches web's endpoints and gets traffic."""
    with processes() as procs:
        # lease_ttl is also how long a restarted control plane waits for sidecars to
        # register again before it serves configuration (they retry within 5 s)
        mesh = XdsMesh(tmp_path, procs, SERVICES, lease_ttl="6s")
        mesh.start_control()
        catalogs = [mesh.sidecar("catalog", mesh.app(f"catalog-{i}")) for i in range(2)]
        web = mesh.sidecar("web")
        wait_for(lambda: len(web.endpoints(CATALOG)) == 2, what="both catalogs")
        load = Load(web.outbound, "catalog", "/", threads=3, rate=50).start()
        wait_for(lambda: load.result.total >= 200, timeout=30, what="load to flow")
        retries_before = web.metric("gossamer_retries_total")
        mesh.stop_control()
        wait_for(lambda: not connected(web), timeout=10, what="web to notice the outage")
        during = load.result.total
        time.sleep(30)  # the outage itself: nothing to configure from, traffic must not care
        assert load.result.total > during + 1000
        assert not any(connected(sc) for sc in (web, *catalogs))
        assert all(sc.ready() for sc in (web, *catalogs))  # ready on the last good config
        assert load.result.errors == [] and set(load.result.statuses) == {200}
        mesh.start_control()
        wait_for(
            lambda: all(connected(sc) for sc in (web, *catalogs)),
            timeout=30,
            what="every sidecar to reconnect",
        )
        status = mesh.status()
        nodes = {s["node_id"].split("~")[1] for s in status["sidecars"]}
        assert nodes >= {web.instance, *(c.instance for c in catalogs)}
        wait_for(lambda: len(web.endpoints(CATALOG)) == 2, what="both catalogs registered again")
        # a new instance after the return: registered, pushed to web, and used
        newcomer = mesh.sidecar("catalog", mesh.app("catalog-new"))
        wait_for(
            lambda: newcomer.inbound in {e["port"] for e in web.endpoints(CATALOG)},
            timeout=20,
            what="the new instance in web's endpoints",
        )

        def served_by_newcomer() -> int:
            found = [e for e in web.endpoints(CATALOG) if e["port"] == newcomer.inbound]
            return int(found[0]["total_requests"]) if found else 0

        wait_for(lambda: served_by_newcomer() >= 50, timeout=20, what="traffic to the newcomer")
        after = load.result.total
        wait_for(lambda: load.result.total >= after + 200, timeout=30, what="load after")
        result = load.stop()
        assert result.errors == [], result.errors[:3]
        assert set(result.statuses) == {200}, result.statuses
        # nothing was masked by retries either
        assert web.metric("gossamer_retries_total") == retries_before
        assert web.metric("gossamer_xds_updates_total", type="CDS") >= 1


def test_certificate_renewal_under_traffic(tmp_path):
    with processes() as procs:
        mesh = XdsMesh(tmp_path, procs, SERVICES)
        mesh.start_control()
        short = ["--cert-ttl", "6"]  # renewed every 3-4.8 s
        catalog = mesh.sidecar("catalog", mesh.app("catalog-0"), extra=short)
        web = mesh.sidecar("web", extra=short)
        serials = {sc.instance: {_serial(sc)} for sc in (web, catalog)}
        load = Load(web.outbound, "catalog", "/", threads=3).start()

        def renewed_twice() -> bool:
            for sc in (web, catalog):
                serials[sc.instance].add(_serial(sc))
            return all(len(s) >= 3 for s in serials.values())

        wait_for(renewed_twice, timeout=30, interval=0.2, what="two renewals on each side")
        result = load.stop()
        assert result.total > 300
        assert result.errors == [], result.errors[:3]
        assert set(result.statuses) == {200}, result.statuses
        # the control plane sees the new certificate on the reopened ADS stream
        status = mesh.status()
        web_node = next(s for s in status["sidecars"] if s["node_id"].endswith(web.instance))
        assert 0 < web_node["cert_seconds_left"] <= 6
        assert connected(web) and connected(catalog)


def test_root_rotation_and_renewal_under_traffic(tmp_path):
    """`gossamer certs rotate-root` while load runs: the new root reaches every sidecar
    (SDS) before any leaf is issued from it, leaves keep renewing, every request
    succeeds (no retries configured, so nothing is masked) and both sides end up on
    leaves from the new root."""
    no_retries = [
        http_service("web"),
        http_service("catalog", authorization={"allow": [spiffe("web")]}),
    ]
    with processes() as procs:
        mesh = XdsMesh(tmp_path, procs, no_retries)
        mesh.start_control()
        short = ["--cert-ttl", "6"]  # renewed every 3-4.8 s
        catalog = mesh.sidecar("catalog", mesh.app("catalog-0"), extra=short)
        web = mesh.sidecar("web", extra=short)
        sidecars = (web, catalog)
        before = {sc.instance: _certificate(sc) for sc in sidecars}
        assert all(c["trusted_roots"] == 1 for c in before.values()), before
        old_issuer = before[web.instance]["issuer"]
        assert "Intermediate CA 1" in old_issuer
        load = Load(web.outbound, "catalog", "/", threads=3).start()
        wait_for(lambda: load.result.total >= 100, timeout=30, what="load to flow")

        out = subprocess.run(
            gossamer_cmd(
                "certs", "rotate-root", "--dir", str(tmp_path / "ca"), "--propagation", "4s",
                "-o", "json",
            ),
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["active_generation"] == 2
        # the new root is trusted everywhere (pushed as ROOTCA), leaves still old
        wait_for(
            lambda: all(_certificate(sc)["trusted_roots"] == 2 for sc in sidecars),
            timeout=15,
            what="the new root in every sidecar's bundle",
        )
        # then issuance moves to the new root; each side renews onto it, twice
        new_serials: dict[str, set[str]] = {sc.instance: set() for sc in sidecars}

        def on_new_root_twice() -> bool:
            for sc in sidecars:
                cert = _certificate(sc)
                if "Intermediate CA 2" in cert["issuer"]:
                    new_serials[sc.instance].add(cert["serial"])
            return all(len(s) >= 2 for s in new_serials.values())

        wait_for(on_new_root_twice, timeout=40, interval=0.2, what="two leaves from the new root")
        after = load.result.total
        wait_for(lambda: load.result.total >= after + 100, timeout=30, what="load after")
        result = load.stop()
        assert result.errors == [], result.errors[:3]
        assert set(result.statuses) == {200}, result.statuses
        for sc in sidecars:
            cert = _certificate(sc)
            assert "Intermediate CA 2" in cert["issuer"] and cert["trusted_roots"] == 2, cert
        # the connections still carry traffic on the new leaves (fresh mTLS handshakes)
        assert web.get("catalog", "/")[0] == 200
        assert catalog.metric("gossamer_tls_handshake_failures_total") == 0


def _certificate(sc: XdsSidecar) -> dict[str, Any]:
    return dict(sc.admin_json("/config_dump?resources=0")["certificate"])


def _serial(sc: XdsSidecar) -> str:
    return str(sc.admin_json("/config_dump?resources=0")["certificate"]["serial"])


def test_a_port_switching_to_grpc_is_accepted_and_back(tmp_path):
    """(Until the sidecar carried HTTP/2, this change was NACKed; the NACK path itself is
    covered by tests/unit/proxy/test_xds_client.py and test_xds_refusals.py.)"""
    with processes() as procs:
        mesh = XdsMesh(tmp_path, procs, SERVICES)
        mesh.start_control()
        catalog = mesh.sidecar("catalog", mesh.app("catalog-0"))
        web = mesh.sidecar("web")
        good = web.admin_json("/config_dump?resources=0")["xds"]["types"]["CDS"]["version"]
        grpc_catalog = {**SERVICES[1], "ports": [{"port": 8080, "protocol": "grpc"}]}
        mesh.set_services([SERVICES[0], grpc_catalog])

        def cds(sc: XdsSidecar) -> dict[str, Any]:
            return dict(sc.admin_json("/config_dump?resources=0")["xds"]["types"]["CDS"])

        wait_for(lambda: cds(web)["version"] != good, timeout=20, what="web's new CDS")
        for sc in (web, catalog):
            assert cds(sc)["nacks"] == 0 and cds(sc).get("last_nack_error") is None
        xds = web.admin_json("/config_dump?resources=0")["xds"]
        assert "outbound|8080||catalog.default" not in xds.get("ignored_clusters", {})
        assert catalog.ready()
        # back to HTTP: web reaches catalog's HTTP/1.1 app again
        mesh.set_services(SERVICES)
        wait_for(
            lambda: web.get("catalog", "/")[0] == 200,
            timeout=20,
            what="the route back to HTTP",
        )
