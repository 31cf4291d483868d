"""HTTP/2 rapid reset (CVE-2023-44487) against a real sidecar: on its inbound port (mTLS,
ALPN h2, a peer with a mesh certificate) and on its outbound port (h2c, the app's side,
routed to the first sidecar). Two connections flood HEADERS + RST_STREAM pairs for a few seconds, reconnecting
whenever they are closed (tests/helpers/h2_flood.py, in a process of its own). The
attacker must get GOAWAY(ENHANCE_YOUR_CALM), the sidecar's RSS must stay under a ceiling,
and a well-behaved peer opening new connections meanwhile must be served promptly.

Before the abuse limits (issue 17, finding 3) the sidecar never sent GOAWAY, its RSS
grew by hundreds of MB and new peers waited seconds for their handshakes."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.h2_flood import Target, probe
from tests.helpers.mesh import REPO, Mesh, Sidecar, config_doc, upstream
from tests.helpers.pki import TRUST_DOMAIN, Workload
from tests.helpers.procs import processes

pytestmark = pytest.mark.e2e

APP_PORT = 8080
SNI = f"outbound_.{APP_PORT}_._.catalog.default.svc.{TRUST_DOMAIN}"
FLOOD_SECONDS = 5.0
RSS_CEILING_MB = 150  # an idle sidecar is about 60 MB; before the fix: 500 MB and more
LATENCY_CEILING = 1.0  # seconds for a new peer: handshake + one request (before: 5-7 s)
ENHANCE_YOUR_CALM = 0xB


class World:
    def __init__(self, mesh: Mesh) -> None:
        self.app = mesh.app("catalog-0")
        self.catalog: Sidecar = mesh.sidecar(
            "catalog", config_doc("catalog", app_ports=[(APP_PORT, "http", self.app)])
        )
        self.web: Sidecar = mesh.sidecar(
            "web",
            config_doc(
                "web", upstreams=[upstream("catalog", [("127.0.0.1", self.catalog.inbound)])]
            ),
        )
        self.attacker = mesh.workload("attacker")
        self.peer = mesh.workload("web")

    def target(self, listener: str, workload: Workload) -> Target:
        if listener == "outbound":  # the app's side: h2c with prior knowledge
            return Target(self.web.outbound, f"catalog:{APP_PORT}")
        return Target(
            self.catalog.inbound,
            f"catalog:{APP_PORT}",
            str(workload.chain_file),
            str(workload.key_file),
            str(workload.bundle_file),
            SNI,
        )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with processes() as procs:
        yield World(Mesh(tmp_path_factory.mktemp("h2abuse"), procs))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.parametrize("listener", ["inbound", "outbound"])
def test_rapid_reset_flood_gets_goaway_and_stays_bounded(
    world: World, tmp_path: Path, listener: str
) -> None:
    victim = world.catalog if listener == "inbound" else world.web
    pid = victim.process.pid
    peer = world.target(listener, world.peer)
    assert probe(peer)[0] == 200
    baseline = rss_mb(pid)
    report = tmp_path / "flood.json"
    attacker = world.target(listener, world.attacker)
    tls = []
    if attacker.cert is not None:
        tls = [
            "--cert", str(attacker.cert), "--key", str(attacker.key),
            "--bundle", str(attacker.bundle), "--sni", SNI,
        ]  # fmt: skip
    flood = subprocess.Popen(
        [
            sys.executable, "-m", "tests.helpers.h2_flood",
            "--port", str(attacker.port), "--seconds", str(FLOOD_SECONDS),
            "--connections", "2", "--authority", attacker.authority,
            *tls, "--report", str(report),
        ],
        cwd=REPO,
    )  # fmt: skip
    peak = [baseline]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss_mb(pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    latencies: list[float] = []
    failures: list[str] = []
    try:
        time.sleep(0.5)  # let the flood get going
        end = time.monotonic() + FLOOD_SECONDS - 1.0
        while time.monotonic() < end:
            try:
                status, seconds = probe(peer)
                latencies.append(seconds)
                if status != 200:
                    failures.append(f"status {status}")
            except OSError as exc:
                failures.append(repr(exc))
            time.sleep(0.2)
        flood.wait(FLOOD_SECONDS + 30)
    finally:
        stop.set()
        sampler.join()
        if flood.poll() is None:
            flood.kill()
    stats = json.loads(report.read_text())
    summary = (
        f"rss baseline {baseline:.0f} MB peak {peak[0]:.0f} MB; peer latency max "
        f"{max(latencies, default=0):.3f} s over {len(latencies)} probes, failures "
        f"{failures}; flood {stats}"
    )
    print(summary)
    assert stats["goaway"].get(str(ENHANCE_YOUR_CALM), 0) >= 1, summary
    assert peak[0] < RSS_CEILING_MB, summary
    assert not failures, summary
    assert latencies and max(latencies) < LATENCY_CEILING, summary
    assert victim.metric("gossamer_downstream_h2_abuse_closed_total", listener=listener) >= 1
    assert f"closing an abusive HTTP/2 connection from 127.0.0.1 ({listener}" in (
        victim.process.output()
    )
