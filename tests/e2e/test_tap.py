"""`gossamer tap` on real processes: `gossamer control`, sidecars bootstrapped with join
tokens (web -> catalog over mTLS), echo apps. The CLI runs as a subprocess with an
operator API token while a thread sends traffic; records carry the SPIFFE IDs from the
mTLS handshakes, the path without its query string, status and latency; the filters
narrow them; a viewer token is refused; the audit log has each tap; a burst over the
cap is dropped (counted in the sidecar's metrics) while every request succeeds; and a
sidecar with no tap open counts no tap work at all."""

from __future__ import annotations

import functools
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers.metrics_text import metric_sum
from tests.helpers.operator_api import api_call
from tests.helpers.procs import gossamer_cmd, http_get, processes, wait_for
from tests.helpers.xds_mesh import REPO, XdsMesh, XdsSidecar, http_service, spiffe

pytestmark = pytest.mark.e2e

SERVICES = [
    http_service("web"),
    http_service("idle"),  # never tapped
    http_service("catalog", authorization={"allow": [spiffe("web")]}),
    http_service("quiet", authorization={"allow": [spiffe("idle")]}),  # idle's callee, never tapped
]
TIMEOUT = 60


class World:
    def __init__(self, mesh: XdsMesh) -> None:
        self.mesh = mesh
        mesh.start_control()
        self.api = f"http://127.0.0.1:{mesh.ports['api']}"
        admin = (mesh.tmp / "data" / "admin-token").read_text().strip()
        self.tokens: dict[str, str] = {}
        for role in ("operator", "viewer"):
            status, body = api_call(
                mesh.ports["api"], "/v1/api-tokens", admin, "POST", {"name": role, "role": role}
            )
            assert status == 201, body
            self.tokens[role] = body["token"]
        self.catalog = mesh.sidecar("catalog", mesh.app("catalog"))
        self.web = mesh.sidecar("web")
        self.idle = mesh.sidecar("idle")
        self.quiet = mesh.sidecar("quiet", mesh.app("quiet"))
        self.admin = admin
        wait_for(lambda: self.web.get("catalog:8080", "/")[0] == 200, timeout=30,
                 what="web -> catalog")  # fmt: skip
        wait_for(lambda: self.idle.get("quiet:8080", "/")[0] == 200, timeout=30,
                 what="idle -> quiet")  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("tap")
    with processes() as procs:
        yield World(XdsMesh(tmp, procs, SERVICES))


class Traffic:
    """Requests from web's app to catalog in a thread, until stopped."""

    def __init__(self, web: XdsSidecar, paths: tuple[str, ...], pause: float = 0.02) -> None:
        self.web, self.paths, self.pause = web, paths, pause
        self.statuses: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set() and i < 20_000:
            path = self.paths[i % len(self.paths)]
            try:
                status = self.web.get("catalog:8080", path)[0]
            except OSError:
                status = 0
            self.statuses.append(status)
            i += 1
            if self.pause:
                time.sleep(self.pause)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


def tap(world: World, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        gossamer_cmd("tap", *args, "--api", world.api, "--token",
                     token or world.tokens["operator"]),
        capture_output=True, text=True, timeout=TIMEOUT, cwd=REPO,
    )  # fmt: skip


def records(out: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def test_no_tap_open_means_no_tap_work(world: World) -> None:
    """Sidecars no tap ever reached (idle's outbound, quiet's inbound; no test taps them,
    whatever the order) serve requests with their tap counters at zero."""
    for _ in range(20):
        assert world.idle.get("quiet:8080", "/?q=1")[0] == 200
    for sidecar in (world.idle, world.quiet):
        assert sidecar.metric("gossamer_tap_requests_examined_total") == 0
        assert sidecar.metric("gossamer_tap_records_total") == 0
        assert sidecar.metric("gossamer_tap_records_dropped_total") == 0


def test_tap_prints_live_records_with_identities(world: World) -> None:
    started = time.monotonic()
    with Traffic(world.web, ("/?secret=hunter2", "/headers?x=1")):
        out = tap(world, "web", "--max", "5", "-o", "json")
    got = records(out)
    assert len(got) == 5, out.stdout
    assert time.monotonic() - started < 30  # "within seconds" (generous: a loaded machine)
    for r in got:
        assert r["direction"] == "outbound"
        assert r["source"] == spiffe("web")
        assert r["destination"] == spiffe("catalog")
        assert r["method"] == "GET"
        assert r["authority"] == "catalog:8080"
        assert r["path"] in ("/", "/headers"), r  # the query string never leaves
        assert r["status"] == 200
        assert 0 < r["latency_ms"] < 10_000
        assert set(r) >= {"ts", "bytes", "trace_id"}
    assert "hunter2" not in out.stdout
    assert "5 records" in out.stderr


def test_tap_of_the_callee_sees_inbound(world: World) -> None:
    with Traffic(world.web, ("/",)):
        got = records(tap(world, "catalog", "--max", "3", "-o", "json"))
    assert [r["direction"] for r in got] == ["inbound"] * 3
    assert {r["source"] for r in got} == {spiffe("web")}
    assert {r["destination"] for r in got} == {spiffe("catalog")}


def test_filters_narrow_the_records(world: World) -> None:
    with Traffic(world.web, ("/", "/headers", "/status/404")):
        by_path = records(tap(world, "web", "--path", "/status", "--max", "3", "-o", "json"))
        by_to = records(tap(world, "web", "--to", "catalog", "--max", "2", "-o", "json"))
    assert {r["path"] for r in by_path} == {"/status/404"}
    assert {r["status"] for r in by_path} == {404}
    assert {r["destination"] for r in by_to} == {spiffe("catalog")}
    with Traffic(world.web, ("/",)):
        # nothing is a POST, and nothing goes to vault: these taps see no record, once
        # they have reached web's sidecar (its examined count rises again)
        for extra in (("--method", "POST"), ("--to", "vault")):
            idle = examined_settles(world.web)  # no earlier tap is still open there
            proc = subprocess.Popen(
                gossamer_cmd("tap", "web", *extra, "-o", "json", "--api", world.api,
                             "--token", world.tokens["operator"]),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
            )  # fmt: skip
            try:
                wait_for(functools.partial(examined_past, world.web, idle + 20), timeout=30,
                         what="the tap to examine web's requests")  # fmt: skip
                time.sleep(1.5)  # a wrong match would be batched (0.2 s) and printed by now
            finally:
                proc.terminate()
                stdout, _ = proc.communicate(timeout=30)
            assert stdout.strip() == "", (extra, stdout)


def examined(sidecar: XdsSidecar) -> float:
    return sidecar.metric("gossamer_tap_requests_examined_total")


def examined_past(sidecar: XdsSidecar, floor: float) -> bool:
    return examined(sidecar) >= floor


def examined_settles(sidecar: XdsSidecar) -> float:
    """The sidecar's examined count once it stops rising for a second while traffic
    flows: no tap is open there."""
    last = examined(sidecar)
    for _ in range(30):
        time.sleep(1)
        now = examined(sidecar)
        if now == last:
            return now
        last = now
    raise AssertionError("a tap stayed open on the sidecar")


def test_table_output(world: World) -> None:
    with Traffic(world.web, ("/headers?token=abc",)):
        out = tap(world, "web", "--max", "2")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split()[:4] == ["TIME", "DIR", "SOURCE", "DESTINATION"]
    assert len(lines) == 3
    for line in lines[1:]:
        assert " out " in line and " web " in line and " catalog " in line
        assert "/headers" in line and "token=abc" not in line and " 200 " in line


def test_viewer_token_is_refused_and_audit_records_taps(world: World) -> None:
    with Traffic(world.web, ("/status/404",)):  # this test's own tap, in the audit below
        got = records(tap(world, "web", "--path", "/status/4", "--max", "2", "-o", "json"))
    assert len(got) == 2
    out = tap(world, "web", "--max", "1", token=world.tokens["viewer"])
    assert out.returncode != 0
    assert "needs operator" in out.stderr and "Traceback" not in out.stderr
    out = tap(world, "nosuch", "--max", "1")
    assert out.returncode != 0 and "not in the registry" in out.stderr
    status, body = api_call(world.mesh.ports["api"], "/v1/tap?service=web&bogus=1",
                            world.tokens["operator"])  # fmt: skip
    assert status == 400 and "bogus" in body["error"]
    status, body = api_call(world.mesh.ports["api"], "/v1/audit?limit=200", world.admin)
    assert status == 200
    entries = body["entries"]
    opened = [e for e in entries if e["action"] == "tap open" and e.get("path") == "/status/4"]
    assert len(opened) == 1 and opened[0]["who"] == "operator", opened
    assert opened[0]["namespace"] == "*" and opened[0]["max"] == 2
    closed = [e for e in entries if e["action"] == "tap close" and e["tap"] == opened[0]["tap"]]
    assert len(closed) == 1 and closed[0]["records"] == 2 and closed[0]["reason"] == "max reached"
    refused = [(e["who"], e["status"]) for e in entries if e["action"] == "GET /v1/tap"]
    assert ("viewer", 403) in refused and ("operator", 404) in refused
    assert ("operator", 400) in refused


def test_burst_over_the_cap_is_dropped_and_counted(world: World) -> None:
    before = world.web.metric("gossamer_tap_records_dropped_total")
    examined = world.web.metric("gossamer_tap_requests_examined_total")

    def tapped() -> bool:
        world.web.get("catalog:8080", "/")
        return world.web.metric("gossamer_tap_requests_examined_total") > examined

    proc = subprocess.Popen(
        gossamer_cmd("tap", "web", "--rate", "5", "-o", "json", "--api", world.api,
                     "--token", world.tokens["operator"]),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    try:
        wait_for(tapped, timeout=30, what="the tap to reach web's sidecar")
        with Traffic(world.web, ("/",), pause=0) as traffic:
            wait_for(lambda: len(traffic.statuses) >= 300, timeout=60, what="a burst")
    finally:
        proc.terminate()
        stdout, _ = proc.communicate(timeout=30)
    assert set(traffic.statuses) == {200}, set(traffic.statuses)
    dropped = world.web.metric("gossamer_tap_records_dropped_total") - before
    assert dropped > 0
    sent = len([line for line in stdout.splitlines() if line.strip()])
    # 5 a second (and a burst of 5): far fewer records than requests
    assert 0 < sent < len(traffic.statuses) / 2, (sent, len(traffic.statuses))


def test_control_plane_counts_tap_streams_and_taps(world: World) -> None:
    def figures() -> tuple[float, float, float]:
        _, text = http_get(f"{world.api}/metrics")
        body = text.decode()
        return (
            metric_sum(body, "gossamer_control_tap_streams"),
            metric_sum(body, "gossamer_control_taps_open"),
            metric_sum(body, "gossamer_control_taps_opened_total"),
        )

    opened = figures()[2]
    with Traffic(world.web, ("/",)):
        assert len(records(tap(world, "catalog", "--max", "1", "-o", "json"))) == 1
    # web, idle, catalog and quiet each keep one Tap stream; every tap has closed
    wait_for(lambda: figures()[:2] == (4, 0), timeout=20, what="4 tap streams, no tap open")
    assert figures()[2] == opened + 1
