"""`gossamer tap` with two control-plane replicas on one real etcd (real processes): a
replica taps only the sidecars whose Tap stream is on it (the documented limit), and a
sidecar that moves to the other replica when its own is killed can be tapped there."""

from __future__ import annotations

import json
import select
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.procs import gossamer_cmd, processes, wait_for
from tests.helpers.replicas import ReplicatedMesh, control_plane
from tests.helpers.xds_mesh import REPO, XdsSidecar, spiffe

pytestmark = pytest.mark.e2e


class Traffic:
    def __init__(self, web: XdsSidecar) -> None:
        self.web = web
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for _ in range(20_000):
            if self._stop.wait(0.03):
                return
            try:
                self.web.get("catalog:8080", "/", timeout=3)
            except OSError:
                pass

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def admin_token(replica_dir: Path) -> str:
    (found,) = replica_dir.rglob("admin-token")
    return found.read_text().strip()


def tap(api_port: int, token: str, service: str, n: int) -> list[dict[str, Any]]:
    out = subprocess.run(
        gossamer_cmd("tap", service, "--max", str(n), "-o", "json",
                     "--api", f"http://127.0.0.1:{api_port}", "--token", token),
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def ended_by_sigterm(mesh: ReplicatedMesh, api_port: int, token: str) -> None:
    """A tap streaming from replica b when b gets SIGTERM: b exits within seconds (it
    used to wait out aiohttp's graceful shutdown for the open stream, about 120 s), and
    the CLI says the control plane ended the tap, exit status 1, no traceback."""
    proc = subprocess.Popen(
        gossamer_cmd("tap", "web", "-o", "json", "--api", f"http://127.0.0.1:{api_port}",
                     "--token", token),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        # a record within 30 s: the tap is open and live
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        line = proc.stdout.readline() if ready else ""
        if not line:
            proc.kill()
            raise AssertionError(f"no tap record in 30 s: {proc.communicate()[1]}")
        first = json.loads(line)
        assert first["direction"] == "outbound", first
        started = time.monotonic()
        mesh.stop("b")  # SIGTERM, SIGKILL after 10 s
        stopped_in = time.monotonic() - started
        _, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert stopped_in < 8, f"the control plane took {stopped_in:.1f} s to stop"
    assert proc.returncode == 1, stderr
    assert "the control plane ended the tap: control plane stopping" in stderr, stderr
    assert "Traceback" not in stderr


def waiting_message(api_port: int, token: str, service: str) -> str:
    proc = subprocess.Popen(
        gossamer_cmd("tap", service, "-o", "json", "--api", f"http://127.0.0.1:{api_port}",
                     "--token", token),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    time.sleep(3)
    proc.terminate()
    stdout, stderr = proc.communicate(timeout=30)
    assert stdout.strip() == ""
    return stderr


def test_a_replica_taps_its_own_sidecars_and_a_moved_one(tmp_path: Path, etcd_server) -> None:
    with processes() as procs:
        mesh = ReplicatedMesh(tmp_path, procs, etcd_server.store_url("/tap"), ["a", "b"])
        try:
            a, b = mesh.start("a"), mesh.start("b")
            tokens = {"a": admin_token(a.dir), "b": admin_token(b.dir)}
            mesh.sidecar("catalog", mesh.app("catalog"), order=["b", "a"])
            web = mesh.sidecar("web", None)  # prefers a
            wait_for(lambda: web.get("catalog:8080", "/")[0] == 200, timeout=30,
                     what="web -> catalog")  # fmt: skip
            with Traffic(web):
                got = tap(a.ports["api"], tokens["a"], "web", 3)
                assert [(r["direction"], r["source"]) for r in got] == [
                    ("outbound", spiffe("web"))
                ] * 3
                # catalog's Tap stream is on b: a has no sidecar of it to tap
                assert "no sidecar of this service is connected" in waiting_message(
                    a.ports["api"], tokens["a"], "catalog"
                )
                got = tap(b.ports["api"], tokens["b"], "catalog", 3)
                assert {r["direction"] for r in got} == {"inbound"}

                mesh.kill("a")
                wait_for(lambda: control_plane(web)["registered_at"] == b.xds, timeout=30,
                         what="web registered on b")  # fmt: skip
                got = tap(b.ports["api"], tokens["b"], "web", 3)
                assert {(r["direction"], r["destination"]) for r in got} == {
                    ("outbound", spiffe("catalog"))
                }
                ended_by_sigterm(mesh, b.ports["api"], tokens["b"])
        finally:
            mesh.close()
