"""Sidecars with several control-plane replicas (`--control A,B`) and a state directory,
as real processes: two `gossamer control` replicas on one real etcd, real `gossamer
proxy` sidecars, real TLS (issue 18, items 3 and 4).

- A replica killed: the sidecar's ADS is on the other within 5 s, new endpoints still
  arrive, requests keep succeeding, certificates renew through the survivor; the first
  replica back: the sidecar returns to it.
- Every replica down and the sidecar restarted: it serves from its state directory
  within seconds, then reconnects and registers when a replica returns.
- Expired state is ignored (the join token bootstraps as usual); an unsafe state
  directory is refused with one clear line.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from tests.helpers.procs import free_port, processes, run_gossamer, wait_for
from tests.helpers.replicas import ReplicatedMesh, control_plane, ports_of

pytestmark = pytest.mark.e2e

CATALOG = "catalog:8080"


def served_by(sc, host: str = CATALOG) -> str | None:
    status, body = sc.get(host, timeout=3)
    return body.decode().strip() if status == 200 else None


def cds_acked(sc) -> int:
    return int(sc.admin_json("/config_dump?resources=0")["xds"]["types"]["CDS"]["acks"])


class Load:
    """Requests through a sidecar every 20 ms in a thread; counts what failed."""

    def __init__(self, sc) -> None:
        self.sc = sc
        self.ok = 0
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                status, body = self.sc.get(CATALOG, timeout=3)
                if status == 200:
                    self.ok += 1
                else:
                    self.failed.append(f"{status} {body[:80]!r}")
            except OSError as exc:
                self.failed.append(repr(exc))
            time.sleep(0.02)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def test_a_replica_killed_then_back(tmp_path, etcd_server):
    with processes() as procs:
        mesh = ReplicatedMesh(tmp_path, procs, etcd_server.store_url("/failover"), ["a", "b"])
        try:
            mesh.start("a")
            mesh.start("b")
            probe = ["--control-probe-interval", "1"]
            # catalog-1 prefers b: it stays put while web moves (an instance that moves
            # re-registers, taking its instance over from its old lease in one write:
            # tests/unit/discovery/test_registry.py checks that part)
            cat1 = mesh.sidecar("catalog", mesh.app("catalog-1"), extra=probe, order=["b", "a"])
            web = mesh.sidecar("web", mesh.app("web"), extra=[*probe, "--cert-ttl", "20"])
            wait_for(lambda: served_by(web) == "catalog-1", what="web -> catalog")
            before = control_plane(web)
            cds_acks = cds_acked(web)
            assert before["current"] == mesh.replicas["a"].xds and before["preferred"]
            assert before["target"] == mesh.replicas["a"].xds

            with Load(web) as load:
                killed = time.monotonic()
                mesh.kill("a")

                def on_b() -> bool:
                    cp = control_plane(web)
                    return bool(cp["connected"] and cp["target"] == mesh.replicas["b"].xds)

                wait_for(on_b, timeout=5, interval=0.02, what="web's ADS on replica b")
                failover = time.monotonic() - killed
                wait_for(
                    lambda: control_plane(web)["registered_at"] == mesh.replicas["b"].xds,
                    timeout=5,
                    what="web registered on b",
                )
                print(f"failover: ADS on replica b {failover:.2f} s after the kill")
                cp = control_plane(web)
                assert cp["moves"] == 1 and not cp["preferred"]
                # b serves the same versions: the clusters are not sent (nor applied) again
                assert cds_acked(web) == cds_acks
                assert web.metric("gossamer_control_plane_moves_total") == 1

                # an endpoint registered after the kill reaches web through b
                cat2 = mesh.sidecar("catalog", mesh.app("catalog-2"), extra=probe)
                assert control_plane(cat2)["current"] == mesh.replicas["b"].xds
                wait_for(
                    lambda: len(web.endpoints("outbound|8080||catalog")) == 2,
                    timeout=10,
                    what="the new catalog endpoint at web",
                )
                wait_for(lambda: served_by(web) == "catalog-2", what="a request to catalog-2")

                # the 20 s leaf renews through b (50-80% of its life)
                serial = web.admin_json("/config_dump?resources=0")["certificate"]["serial"]
                wait_for(
                    lambda: (
                        web.admin_json("/config_dump?resources=0")["certificate"]["serial"]
                        != serial
                    ),
                    timeout=25,
                    what="a certificate renewal through b",
                )
                renewed = [
                    json.loads(line)
                    for line in web.process.output().splitlines()
                    if '"certificate renewed"' in line
                ]
                assert renewed and renewed[-1]["control"] == mesh.replicas["b"].xds
                assert load.ok > 50
            assert load.failed == [], load.failed[:5]

            # a comes back: web returns to it (probed every second)
            back = time.monotonic()
            mesh.start("a")
            wait_for(
                lambda: (
                    control_plane(web)["target"] == mesh.replicas["a"].xds
                    and control_plane(web)["registered_at"] == mesh.replicas["a"].xds
                ),
                timeout=15,
                what="web back on replica a",
            )
            print(f"fail-back: on replica a {time.monotonic() - back:.2f} s after its start")
            cp = control_plane(web)
            assert cp["preferred"] and cp["moves"] == 2
            assert control_plane(cat1)["target"] == mesh.replicas["b"].xds  # never moved
            assert control_plane(cat1)["moves"] == 0
            # endpoints stayed: both catalogs are still served through web
            assert len(web.endpoints("outbound|8080||catalog")) == 2
            assert served_by(web) in ("catalog-1", "catalog-2")
            log = web.process.output()
            assert "moving to the next" in log and "moving back" in log
        finally:
            mesh.close()


def test_total_outage_and_a_sidecar_restart_serve_from_the_state_directory(tmp_path, etcd_server):
    with processes() as procs:
        mesh = ReplicatedMesh(tmp_path, procs, etcd_server.store_url("/outage"), ["a", "b"])
        try:
            mesh.start("a")
            mesh.start("b")
            cat = mesh.sidecar("catalog", mesh.app("catalog-1"))
            state = tmp_path / "web-state"
            token = mesh.token_file("web")
            web_app = mesh.app("web")
            extra = ["--state-dir", str(state)]
            web = mesh.sidecar("web", web_app, token_file=token, extra=extra, instance="web-1")
            wait_for(lambda: served_by(web) == "catalog-1", what="web -> catalog")
            wait_for((state / "xds.json").exists, what="the stored configuration")
            assert (os.stat(state).st_mode & 0o777) == 0o700
            assert (os.stat(state / "identity.json").st_mode & 0o777) == 0o600
            assert not control_plane(web)["started_from_state"]

            # every replica down, then web's sidecar restarts
            mesh.stop("a")
            mesh.stop("b")
            web.process.stop()
            started = time.monotonic()
            web2 = mesh.sidecar(
                "web",
                web_app,
                instance="web-1",
                ports=ports_of(web),
                token_file=token,
                extra=extra,
                wait_ready=False,
            )
            wait_for(lambda: served_by(web2) == "catalog-1", timeout=10, interval=0.05,
                     what="web serving from its state directory")  # fmt: skip
            serving = time.monotonic() - started
            print(f"restart with no control plane: serving {serving:.2f} s after the start")
            assert serving < 5.0
            assert web2.ready()
            cp = control_plane(web2)
            assert cp["started_from_state"] and not cp["connected"]
            assert cat.process.alive()
            log = web2.process.output()
            assert "identity restored from the state directory" in log
            assert "configuration restored from the state directory" in log

            # a replica returns: web reconnects (ADS) and registers
            mesh.start("b")
            wait_for(
                lambda: (
                    control_plane(web2)["connected"]
                    and control_plane(web2)["registered_at"] == mesh.replicas["b"].xds
                ),
                timeout=20,
                what="web reconnected and registered on b",
            )
            # the replica publishes catalog's endpoint once catalog's sidecar registered
            # again (its lease ran out during the outage; with etcd there is no hold)
            wait_for(lambda: served_by(web2) == "catalog-1", timeout=15, what="web -> catalog")
            # ADS resumed with the stored versions: the clusters were not sent again
            assert cds_acked(web2) == 1  # the replay of the stored ones
            assert control_plane(cat)["registered_at"] == mesh.replicas["b"].xds
        finally:
            mesh.close()


def test_expired_state_is_ignored_and_the_token_bootstraps(tmp_path, etcd_server):
    with processes() as procs:
        mesh = ReplicatedMesh(tmp_path, procs, etcd_server.store_url("/expired"), ["a"])
        try:
            mesh.start("a")
            state = tmp_path / "state"
            token = mesh.token_file("web")
            extra = ["--state-dir", str(state), "--cert-ttl", "6"]
            web = mesh.sidecar("web", None, instance="web-1", token_file=token, extra=extra)
            wait_for((state / "identity.json").exists, what="the stored identity")
            web.process.stop()
            time.sleep(0.5)
            # the stored leaf has under 10 s left: not used
            again = mesh.sidecar(
                "web", None, instance="web-1", ports=ports_of(web), token_file=token, extra=extra
            )
            log = again.process.output()
            assert "stored identity ignored" in log and "expired" in log
            assert not control_plane(again)["started_from_state"]
            again.process.stop()
            time.sleep(7)  # now it has expired for good
            # without a token, an expired state is a clear error, not a hang
            fresh = {k: free_port() for k in ("inbound", "outbound", "admin", "metrics")}
            args = mesh.sidecar_args(
                "web", "web-1", fresh, app_port=None, token_file=None, extra=extra
            )
            out = run_gossamer(*args[3:])
            assert out.returncode != 0
            assert "no usable identity in the state directory" in out.stderr
            assert "Traceback" not in out.stderr
        finally:
            mesh.close()


@pytest.mark.parametrize("kind", ["open", "link", "file"])
def test_an_unsafe_state_directory_is_refused(tmp_path, kind):
    path = tmp_path / "state"
    if kind == "open":
        path.mkdir()
        path.chmod(0o755)
    elif kind == "link":
        (tmp_path / "real").mkdir(mode=0o700)
        path.symlink_to(tmp_path / "real")
    else:
        path.write_text("")
    out = run_gossamer(
        "proxy", "--service", "web", "--control", "127.0.0.1:1,127.0.0.1:2",
        "--state-dir", str(path),
    )  # fmt: skip
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    want = {"open": "open to other users", "link": "symbolic link", "file": "not a directory"}
    assert want[kind] in out.stderr, out.stderr
    assert len([line for line in out.stderr.splitlines() if line.strip()]) <= 2


def test_bad_control_lists_are_usage_errors(tmp_path: Path):
    out = run_gossamer("proxy", "--service", "web", "--control", "a:1,b", "--token", "x")
    assert out.returncode != 0 and "--control 'b'" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_stored_leaf_revoked_meanwhile_is_replaced_with_the_token(tmp_path, etcd_server):
    """Restarted from its state directory, a sidecar renews at once; a leaf revoked while
    it was down is refused, and its join token gets it a new one (as a restart without
    state would)."""
    with processes() as procs:
        mesh = ReplicatedMesh(tmp_path, procs, etcd_server.store_url("/revoked"), ["a"])
        try:
            replica = mesh.start("a")
            state = tmp_path / "state"
            token = mesh.token_file("web")
            extra = ["--state-dir", str(state)]
            web = mesh.sidecar("web", None, instance="web-1", token_file=token, extra=extra)
            wait_for((state / "xds.json").exists, what="the stored configuration")
            serial = web.admin_json("/config_dump?resources=0")["certificate"]["serial"]
            web.process.stop()
            admin = (replica.dir / ".gossamer" / "data" / "admin-token").read_text().strip()
            api = ["--api", f"http://127.0.0.1:{replica.ports['api']}", "--token", admin]
            done = run_gossamer("certs", "revoke", serial, *api, "-o", "json")
            assert done.returncode == 0, done.stderr
            again = mesh.sidecar(
                "web", None, instance="web-1", ports=ports_of(web), token_file=token, extra=extra
            )
            assert control_plane(again)["started_from_state"]

            def new_serial() -> bool:
                dump = again.admin_json("/config_dump?resources=0")
                return bool(dump["certificate"]["serial"] != serial)

            wait_for(new_serial, timeout=20, what="a new leaf from the join token")
            assert "bootstrapping again with the join token" in again.process.output()
            wait_for(
                lambda: control_plane(again)["registered_at"] == replica.xds,
                timeout=15,
                what="registered with the new leaf",
            )
        finally:
            mesh.close()
