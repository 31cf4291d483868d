"""`gossamer up` as a user runs it: a subprocess that brings the demo mesh up, answers
requests through the mesh (loadgen's sidecar -> web -> catalog x2 -> inventory, every
hop between sidecars over mutual TLS), prints a live summary, and on SIGTERM stops every
process it started — and, with `--isolate`, removes its namespaces, veths and bridge.
A `gossamer up` killed outright takes its processes with it (parent-death signal), and
the next `--isolate` run removes the network it left behind."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.metrics_text import metric_sum
from tests.helpers.procs import http_get, wait_for

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
MESH_SERVICES = ("web", "catalog", "inventory", "loadgen")


def proc_stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time) of a live process, else None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    if fields[0] == "Z":
        return None
    return int(fields[1]), int(fields[19])


def descendants(root: int) -> dict[int, int]:
    """Every live process under `root`: pid -> start time (so a reused pid is not it)."""
    parents: dict[int, tuple[int, int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (info := proc_stat(int(entry))) is not None:
            parents[int(entry)] = info
    found: dict[int, int] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, started) in parents.items():
            if ppid == parent and pid not in found:
                found[pid] = started
                frontier.append(pid)
    return found


def still_running(snapshot: dict[int, int]) -> list[int]:
    return [pid for pid, started in snapshot.items() if (proc_stat(pid) or (0, -1))[1] == started]


def mentioning(text: str) -> list[int]:
    """Live processes whose command line contains `text` (the run's state directory)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if text.encode() in cmdline and proc_stat(int(entry)) is not None:
            pids.append(int(entry))
    return pids


class Up:
    def __init__(self, tmp: Path, *args: str) -> None:
        self.state = tmp / "state"
        self.log = tmp / "up.out"
        self._out = open(self.log, "wb")  # noqa: SIM115 - closed in finish()
        cmd = [sys.executable, "-m", "gossamer.cli.main", "up", "--state-dir", str(self.state)]
        self.proc = subprocess.Popen(
            [*cmd, "--interval", "1", "--rate", "10", *args],
            cwd=tmp,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def status(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.state / "status.json").read_text())
        return data

    def wait_ready(self, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"gossamer up exited:\n{self.output()}"
            try:
                status = self.status()
                if status.get("ready"):
                    return status
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        raise AssertionError(f"gossamer up not ready in {timeout}s:\n{self.output()}")

    def finish(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._out.close()


@contextmanager
def gossamer_up(tmp: Path, *args: str) -> Iterator[Up]:
    up = Up(tmp, *args)
    try:
        yield up
    finally:
        up.finish()
        for pid in mentioning(str(up.state)):  # never leave anything behind, even on failure
            os.kill(pid, signal.SIGKILL)


def check_mesh(status: dict[str, Any], run_curl: list[str]) -> None:
    """Requests through the mesh, mTLS between sidecars, identities on the control plane."""
    served_by: set[str] = set()
    for _ in range(20):
        out = subprocess.run(run_curl, capture_output=True, text=True, timeout=15)
        assert out.returncode == 0, out.stderr
        body = json.loads(out.stdout)
        web, catalog, inventory = body["path"]
        assert web.startswith("web-") and catalog.startswith("catalog-")
        assert inventory.startswith("inventory-")
        served_by.add(catalog)
    assert len(served_by) == 2, f"both catalog replicas serve: {served_by}"

    instances = {i["name"]: i for i in status["instances"]}
    inventory = instances["inventory"]
    # the metrics port: the admin port listens on 127.0.0.1 inside the instance's namespace
    code, raw = http_get(f"http://{inventory['address']}:{inventory['metrics']}/metrics")
    assert code == 200
    text = raw.decode()
    # inventory's sidecar saw catalog's requests arrive over mutual TLS, with catalog's identity
    assert (
        metric_sum(
            text,
            "gossamer_requests_total",
            reporter="destination",
            source_service="catalog",
            connection_security_policy="mutual_tls",
        )
        > 0
    )
    assert metric_sum(text, "gossamer_requests_total", connection_security_policy="none") == 0

    token = status["dashboard"].split("#token=", 1)[1]
    api = status["control"]["api_url"]
    code, raw = http_get(f"{api}/v1/sidecars", headers={"Authorization": f"Bearer {token}"})
    assert code == 200
    identities = sorted(s["identity"] for s in json.loads(raw)["sidecars"] if s["identity"])
    expected = sorted(
        f"spiffe://gossamer.local/ns/default/sa/{s}"
        for s in ("web", "catalog", "catalog", "inventory", "loadgen")
    )
    assert identities == expected
    code, raw = http_get(f"{api}/v1/stat?window=10s", headers={"Authorization": f"Bearer {token}"})
    assert code == 200 and {s["name"] for s in json.loads(raw)["services"]} >= {"web", "catalog"}


def route_around_a_dead_replica(up: Up, status: dict[str, Any], curl: list[str]) -> None:
    """Kill catalog-2's app: the mesh sends everything to catalog-1 from then on."""
    os.kill(status["processes"]["catalog-2"], signal.SIGKILL)
    wait_for(lambda: "! catalog-2 exited" in up.output(), timeout=5, what="the exit reported")

    def only_catalog_1() -> bool:
        for _ in range(10):
            out = subprocess.run(curl, capture_output=True, text=True, timeout=15)
            if out.returncode != 0:
                return False
            _web, catalog, _inventory = json.loads(out.stdout)["path"]
            if not catalog.endswith(f"-{status['processes']['catalog-1']}"):
                return False
        return True

    wait_for(only_catalog_1, timeout=20, interval=0.5, what="traffic to catalog-1 only")


def stop_and_check(up: Up, processes: int = 11) -> str:
    before = descendants(up.proc.pid)
    # control plane, 4 apps, 5 sidecars, load generator
    assert len(before) == processes, before
    up.proc.send_signal(signal.SIGTERM)
    assert up.proc.wait(30) == 0, up.output()
    output = up.output()
    assert "stopping ..." in output and output.rstrip().endswith("stopped"), output
    wait_for(lambda: not still_running(before), timeout=5, what="every child gone")
    assert mentioning(str(up.state)) == []
    assert not (up.state / "status.json").exists()
    return output


def test_up_loopback(tmp_path: Path):
    with gossamer_up(tmp_path) as up:
        status = up.wait_ready()
        assert status["startup_seconds"] < 30  # measured and reported: ~N s on 2 cores
        output = up.output()
        assert f"Dashboard  {status['dashboard']}" in output
        assert re.search(r"up in \d+\.\d s: 11 processes", output)
        curl = status["curl"]
        assert curl.startswith("curl -x http://127.0.0.1:") and curl.endswith("http://web:8080/")
        check_mesh(status, [*shlex.split(curl), "-sf", "--max-time", "10"])
        code, page = http_get(status["dashboard"].split("#")[0])
        assert code == 200 and b"<html" in page.lower()
        wait_for(lambda: "sidecars connected 5/5" in up.output(), timeout=10, what="summary")
        assert "processes running 11/11" in up.output()
        route_around_a_dead_replica(up, status, [*shlex.split(curl), "-sf", "--max-time", "10"])
        stop_and_check(up, processes=10)


@pytest.mark.root
def test_up_isolated(tmp_path: Path):
    assert os.geteuid() == 0, "--isolate creates network namespaces: run as root"
    with gossamer_up(tmp_path, "--isolate") as up:
        status = up.wait_ready()
        run_id = str(up.proc.pid)
        assert status["isolated"] and status["bridge"] == f"gupb{run_id}"
        namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert f"gup-{run_id}-catalog-2" in namespaces and f"gup-{run_id}-control" in namespaces
        entry = next(i for i in status["instances"] if i["name"] == "loadgen")
        # the app-side client dials web by name; iptables hands it to loadgen's sidecar
        check_mesh(
            status,
            ["ip", "netns", "exec", entry["netns"], "curl", "-sf", "--max-time", "10",
             "http://web:8080/"],
        )  # fmt: skip
        # a name /etc/hosts lacks comes from the sidecar's DNS: web's VIP, routed to
        # web's cluster like web's own address
        check_mesh(
            status,
            ["ip", "netns", "exec", entry["netns"], "curl", "-sf", "--max-time", "10",
             "http://web.default:8080/"],
        )  # fmt: skip
        # plaintext straight to inventory's app port is captured by its sidecar, which
        # speaks only mutual TLS: the request never reaches the app
        inventory = next(i for i in status["instances"] if i["name"] == "inventory")
        direct = subprocess.run(
            ["curl", "-s", "--max-time", "5", f"http://{inventory['address']}:8080/stock"],
            capture_output=True,
            text=True,
        )
        assert direct.returncode != 0 or '"stock"' not in direct.stdout
        stop_and_check(up)
        left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert f"gup-{run_id}-" not in left
        links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
        assert f"gupb{run_id}" not in links and f"gup{run_id}v" not in links
        assert not any(p.name.startswith(f"gup-{run_id}-") for p in Path("/etc/netns").glob("*"))


@pytest.mark.root
def test_killed_up_takes_its_processes_and_the_next_run_cleans_the_network(tmp_path: Path):
    assert os.geteuid() == 0, "--isolate creates network namespaces: run as root"
    first = tmp_path / "first"
    first.mkdir()
    with gossamer_up(first, "--isolate") as up:
        up.wait_ready()
        run_id = str(up.proc.pid)
        children = descendants(up.proc.pid)
        os.kill(up.proc.pid, signal.SIGKILL)  # no clean-up code runs
        up.proc.wait()
        wait_for(lambda: not still_running(children), timeout=10, what="children gone")
    assert (
        f"gup-{run_id}-web"
        in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    )
    second = tmp_path / "second"
    second.mkdir()
    with gossamer_up(second, "--isolate") as again:
        again.wait_ready()
        assert f"removed netns gup-{run_id}-web left by an earlier run" in again.output()
        assert f"removed link gupb{run_id}" in again.output()
        stop_and_check(again)


def test_isolate_needs_root(tmp_path: Path):
    cmd = [sys.executable, "-m", "gossamer.cli.main", "up", "--isolate", "--state-dir", "s"]
    if os.geteuid() == 0:
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    os.chmod(tmp_path, 0o777)
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "error: --isolate needs root" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "s").exists()
