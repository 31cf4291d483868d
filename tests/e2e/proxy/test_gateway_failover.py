"""A node gateway with several control-plane replicas (`gossamer gateway --control A,B`),
as real processes: two `gossamer control` replicas on one real etcd, a real gateway and
real sidecars on loopback (issue 18, items 1 and 3).

node-1 holds the gateway and catalog; web is on node-2, so its catalog requests go to
node-1's gateway, which relays them (SNI, no TLS termination) to catalog's sidecar.
Replica a is SIGKILLed under load: the gateway's ADS and registration move to b within
5 s, an instance started after the kill reaches its routing table through b, web's
requests through the gateway keep succeeding, and when a is back the gateway returns
to it.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.e2e.proxy.test_control_failover import Load, served_by
from tests.helpers.procs import Process, free_port, gossamer_cmd, processes, wait_for
from tests.helpers.replicas import ReplicatedMesh
from tests.helpers.xds_mesh import REPO, TD

pytestmark = pytest.mark.e2e

SNI = f"outbound_.8080_._.catalog.default.svc.{TD}"


class Gateway:
    def __init__(self, mesh: ReplicatedMesh, procs: list[Process], node: str) -> None:
        self.port, self.admin = free_port(), free_port()
        args = gossamer_cmd(
            "gateway", "--node", node,
            "--listen", f"127.0.0.1:{self.port}", "--advertise", f"127.0.0.1:{self.port}",
            "--control", mesh.control_list(), "--bootstrap", mesh.bootstrap_list(),
            "--control-probe-interval", "1",
            "--token-file", str(mesh.token_file("gateway", namespace="gossamer-system")),
            "--admin-port", str(self.admin), "--metrics-port", "0",
        )  # fmt: skip
        self.process = Process(args, mesh.tmp / f"gateway-{node}.log",
                               env={"GOSSAMER_LOG_FORMAT": "json"}, cwd=REPO)  # fmt: skip
        procs.append(self.process)

    def get(self, path: str) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.admin}{path}"
        try:
            with urllib.request.urlopen(url, timeout=3) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def ready(self) -> dict[str, Any]:
        return dict(json.loads(self.get("/ready")[1]))

    def routes(self) -> list[str]:
        return list(json.loads(self.get("/routes")[1]).get("routes", {}).get(SNI, []))

    def metric(self, name: str) -> float:
        for line in self.get("/metrics")[1].splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return -1.0


def test_a_gateway_moves_to_another_replica_and_back(tmp_path, etcd_server):
    with processes() as procs:
        mesh = ReplicatedMesh(tmp_path, procs, etcd_server.store_url("/gwfail"), ["a", "b"])
        try:
            mesh.start("a")
            mesh.start("b")
            a, b = mesh.replicas["a"].xds, mesh.replicas["b"].xds
            probe = ["--control-probe-interval", "1"]
            gw = Gateway(mesh, procs, "node-1")
            wait_for(lambda: not gw.process.alive() or gw.get("/ready")[0] == 200,
                     timeout=30, what="the gateway ready")  # fmt: skip
            assert gw.process.alive(), gw.process.output()
            cp = gw.ready()["control_plane"]
            assert cp["current"] == a and cp["preferred"] and cp["moves"] == 0, cp
            assert cp["addresses"] == [a, b] and cp["registered_at"] == a, cp

            # catalog is on node-1 (b first: it never moves), web on node-2
            cat1 = mesh.sidecar("catalog", mesh.app("catalog-1"), order=["b", "a"],
                                extra=[*probe, "--node", "node-1"])  # fmt: skip
            web = mesh.sidecar("web", mesh.app("web"), extra=[*probe, "--node", "node-2"])
            wait_for(lambda: len(gw.routes()) == 1, what="catalog-1 in the gateway's routes")
            via_gateway = f"127.0.0.1:{gw.port}"
            wait_for(
                lambda: [f"{e['address']}:{e['port']}" for e in web.endpoints("outbound|8080||catalog")]
                == [via_gateway],
                what="web's catalog endpoint at node-1's gateway",
            )  # fmt: skip
            wait_for(lambda: served_by(web) == "catalog-1", what="web -> gateway -> catalog")

            with Load(web) as load:
                killed = time.monotonic()
                mesh.kill("a")
                wait_for(
                    lambda: gw.ready()["control_plane"]["current"] == b
                    and gw.ready()["xds_connected"],
                    timeout=5, interval=0.02, what="the gateway's ADS on replica b",
                )  # fmt: skip
                moved = time.monotonic() - killed
                wait_for(lambda: gw.ready()["control_plane"]["registered_at"] == b,
                         timeout=5, what="the gateway registered on b")  # fmt: skip
                print(f"gateway failover: ADS on replica b {moved:.2f} s after the kill")
                cp = gw.ready()["control_plane"]
                assert cp["moves"] == 1 and not cp["preferred"], cp
                assert gw.metric("gossamer_control_plane_moves_total") == 1

                # a catalog instance registered after the kill reaches the gateway via b
                mesh.sidecar("catalog", mesh.app("catalog-2"), extra=[*probe, "--node", "node-1"])
                wait_for(lambda: len(gw.routes()) == 2, timeout=10,
                         what="catalog-2 in the gateway's routes")  # fmt: skip
                # (web's pooled connections stay on catalog-1: the gateway balances
                # connections, not requests)
                time.sleep(2.0)
            print(f"requests through the gateway during the move: {load.ok}")
            assert load.ok >= 20, load.ok
            assert load.failed == [], load.failed[:5]
            # the gateway stays registered through the move (its lease moved to b):
            # web still reaches node-1 at the gateway and nowhere else
            endpoints = web.endpoints("outbound|8080||catalog")
            assert [f"{e['address']}:{e['port']}" for e in endpoints] == [via_gateway]

            back = time.monotonic()
            mesh.start("a")
            wait_for(
                lambda: gw.ready()["control_plane"]["current"] == a
                and gw.ready()["control_plane"]["registered_at"] == a,
                timeout=15, what="the gateway back on replica a",
            )  # fmt: skip
            print(f"gateway fail-back: on replica a {time.monotonic() - back:.2f} s after start")
            assert gw.ready()["control_plane"]["moves"] == 2
            assert gw.get("/ready")[0] == 200
            assert served_by(web) in ("catalog-1", "catalog-2")
            log = gw.process.output()
            assert "moving to the next" in log and "moving back" in log
            assert cat1.process.alive()
        finally:
            mesh.close()
