"""`gossamer up --nodes 3` as a user runs it (root): three simulated nodes, each a network
namespace with an etcd member, a control-plane replica (its own intermediate) and a
gateway, with the demo spread over them:

    node-1 (zone-a): loadgen, web    node-2 (zone-a): catalog-1    node-3 (zone-b): catalog-2, inventory

Checked on the real processes: requests go loadgen -> web -> catalog -> inventory across
nodes, and the gateways of node 2 and node 3 count the connections that came from node 1
and node 2; every replica's `gossamer status -o json` shows the sidecars connected to it,
each with its `node` (its own node's: they prefer their node's replica), and the three
gateways; a node-internal port answers on its node but not from another node, where only
the gateway and replica ports do; SIGINT stops everything and leaves no namespace, link,
iptables rule, hosts file or etcd process behind. A `gossamer up --nodes` killed outright
takes its processes with it, and the next run removes the network it left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_up import Up, descendants, gossamer_up, mentioning, still_running
from tests.helpers.metrics_text import metric_sum
from tests.helpers.procs import gossamer_cmd, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.root]

REPO = Path(__file__).resolve().parents[2]
PLACED = {"loadgen": "node-1", "web": "node-1", "catalog-1": "node-2", "catalog-2": "node-3",
          "inventory": "node-3"}  # fmt: skip
GATEWAY_ID = "spiffe://gossamer.local/ns/gossamer-system/sa/gateway"

CONNECT = r"""
import socket, sys, json
out = {}
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
        out[target] = True
    except OSError:
        out[target] = False
print(json.dumps(out))
"""


def in_node(netns: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", netns, *args], capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


def reachable(netns: str, *targets: str) -> dict[str, bool]:
    out = in_node(netns, sys.executable, "-c", CONNECT, *targets)
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


def gateway_metric(node: dict[str, Any], **labels: str) -> float:
    url = f"http://127.0.0.1:{node['gateway_admin']}/metrics"
    out = in_node(node["netns"], "curl", "-sf", "--max-time", "5", url)
    assert out.returncode == 0, out.stderr
    return metric_sum(out.stdout, "gossamer_gateway_connections_total", **labels)


def status_output(node: dict[str, Any], *options: str) -> str:
    token = Path(node["admin_token_file"]).read_text().strip()
    out = subprocess.run(
        gossamer_cmd("status", "--api", node["api_url"], "--token", token, *options),
        capture_output=True, text=True, timeout=30, cwd=REPO,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return out.stdout


def status_json(node: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(status_output(node, "-o", "json")))


def check_requests_cross_nodes(status: dict[str, Any]) -> None:
    nodes = {n["name"]: n for n in status["nodes"]}
    curl = status["curl"].removeprefix("sudo ").split()
    assert curl[:4] == ["ip", "netns", "exec", nodes["node-1"]["netns"]], curl
    pids = status["processes"]
    for _ in range(10):
        out = subprocess.run([*curl, "--max-time", "10", "-f"], capture_output=True, text=True,
                             timeout=15)  # fmt: skip
        assert out.returncode == 0, out.stderr
        web, catalog, inventory = json.loads(out.stdout)["path"]
        served = {"web": web, "catalog-1": catalog, "inventory": inventory}
        # (catalog-1 shares web's zone, zone-a: locality keeps web's calls there)
        for name, hop in served.items():  # each app answers with its role and its pid
            assert hop.startswith(name.split("-")[0]) and hop.endswith(f"-{pids[name]}"), hop
    # the load generator's traffic too: connections from node 1 through node 2's gateway
    # (web -> catalog-1), from node 2 through node 3's (catalog-1 -> inventory)
    assert gateway_metric(nodes["node-2"], service="catalog.default", peer_node="node-1") > 0
    assert gateway_metric(nodes["node-3"], service="inventory.default", peer_node="node-2") > 0
    # nothing of web's reaches node 3's catalog-2 (another zone)
    assert gateway_metric(nodes["node-3"], service="catalog.default") == 0


def check_status_shows_nodes(status: dict[str, Any]) -> None:
    seen: dict[str, str] = {}
    for node in status["nodes"]:
        data = status_json(node)
        gateways = {g["node"]: g for g in data["gateways"]}
        assert set(gateways) == {"node-1", "node-2", "node-3"}, gateways
        assert gateways[node["name"]]["address"] == node["address"]
        for stream in data["sidecars"]:
            assert stream["node"], stream  # every stream names its node
            if stream["identity"] == GATEWAY_ID:
                assert stream["node"] == node["name"], stream  # a gateway uses its own replica
                continue
            # a sidecar prefers its own node's replica (--control lists it first)
            assert stream["node"] == node["name"], (node["name"], stream)
            seen[stream["node_id"].split("~", 1)[1]] = stream["node"]  # service.ns~instance
    assert seen == PLACED, seen
    # the table: the xDS node id under "sidecar", the locality node under "node"
    lines = status_output(status["nodes"][0]).splitlines()
    header = next(line.split() for line in lines if line.split()[:2] == ["sidecar", "node"])
    rows = [line.split() for line in lines if line.startswith(("web", "loadgen"))]
    assert header[2] == "identity" and rows, lines
    assert all(row[1] == status["nodes"][0]["name"] for row in rows), rows


def check_isolation(status: dict[str, Any]) -> None:
    nodes = {n["name"]: n for n in status["nodes"]}
    web = next(i for i in status["instances"] if i["name"] == "web")
    one, two = nodes["node-1"], nodes["node-2"]
    internal = f"{one['address']}:{web['inbound']}"  # web's sidecar, listening on 0.0.0.0
    admin = f"{one['address']}:{web['admin']}"
    gateway, replica = f"{one['address']}:{one['gateway']}", f"{one['address']}:{one['xds']}"
    assert reachable(one["netns"], internal) == {internal: True}  # it listens, on its node
    assert reachable(two["netns"], internal, admin, gateway, replica) == {
        internal: False, admin: False, gateway: True, replica: True}  # fmt: skip
    # etcd (no authentication in the demo): root reaches it, an app's uid does not, on
    # its own node or another
    etcd_one, etcd_two = f"{one['address']}:2379", f"{two['address']}:2379"
    assert reachable(two["netns"], etcd_one, etcd_two) == {etcd_one: True, etcd_two: True}
    as_app = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]
    out = in_node(two["netns"], *as_app, sys.executable, "-c", CONNECT, etcd_one, etcd_two)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {etcd_one: False, etcd_two: False}


def stop_with(up: Up, sig: signal.Signals, nodes: int) -> None:
    run_id = str(up.proc.pid)
    before = descendants(up.proc.pid)
    # per node an etcd member (up to 3), a replica and a gateway; 4 apps, 5 sidecars and
    # the load generator
    assert len(before) == min(nodes, 3) + 2 * nodes + 10, before
    etcd = [p for p in before if Path(f"/proc/{p}/comm").read_text().strip() == "etcd"]
    assert len(etcd) == min(nodes, 3), before
    up.proc.send_signal(sig)
    assert up.proc.wait(40) == 0, up.output()
    assert up.output().rstrip().endswith("stopped"), up.output()
    wait_for(lambda: not still_running(before), timeout=5, what="every child gone")
    assert mentioning(str(up.state)) == []  # the etcd members' data dirs are in it
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"gup-{run_id}-" not in left, left

    def links_gone() -> bool:  # the kernel frees a deleted namespace's veths lazily
        links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
        return f"gupb{run_id}" not in links and f"gup{run_id}v" not in links

    wait_for(links_gone, timeout=15, interval=0.2, what="the run's bridge and veths gone")
    rules = subprocess.run(["iptables", "-w", "-S"], capture_output=True, text=True).stdout
    assert f"gossamer-up-{run_id}" not in rules
    assert not any(p.name.startswith(f"gup-{run_id}-") for p in Path("/etc/netns").glob("*"))


def test_up_three_nodes(tmp_path: Path) -> None:
    assert os.geteuid() == 0, "--nodes creates network namespaces: run as root"
    with gossamer_up(tmp_path, "--nodes", "3") as up:
        status = up.wait_ready(timeout=75)
        run_id = str(up.proc.pid)
        print(f"up in {status['startup_seconds']} s")
        assert [n["name"] for n in status["nodes"]] == ["node-1", "node-2", "node-3"]
        assert {i["name"]: i["node"] for i in status["instances"]} == PLACED
        assert [n["zone"] for n in status["nodes"]] == ["zone-a", "zone-a", "zone-b"]
        namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert all(f"gup-{run_id}-node-{k}" in namespaces for k in (1, 2, 3)), namespaces
        check_requests_cross_nodes(status)
        check_status_shows_nodes(status)
        check_isolation(status)
        wait_for(lambda: "sidecars connected 5/5" in up.output() and "gateways 3/3" in up.output(),
                 timeout=10, what="the summary counting every replica's streams")  # fmt: skip
        stop_with(up, signal.SIGINT, nodes=3)


def test_a_killed_run_takes_its_processes_and_the_next_run_cleans_its_network(
    tmp_path: Path,
) -> None:
    assert os.geteuid() == 0, "--nodes creates network namespaces: run as root"
    first = tmp_path / "first"
    first.mkdir()
    with gossamer_up(first, "--nodes", "2") as up:
        up.wait_ready(timeout=75)
        run_id = str(up.proc.pid)
        children = descendants(up.proc.pid)
        os.kill(up.proc.pid, signal.SIGKILL)  # no clean-up code runs
        up.proc.wait()
        wait_for(lambda: not still_running(children), timeout=15, what="children gone")
    assert mentioning(str(up.state)) == []  # etcd members included (parent-death signal)
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"gup-{run_id}-node-2" in left, left
    second = tmp_path / "second"
    second.mkdir()
    with gossamer_up(second, "--nodes", "2") as again:
        again.wait_ready(timeout=75)
        assert f"removed netns gup-{run_id}-node-1 left by an earlier run" in again.output()
        assert f"removed link gupb{run_id}" in again.output()
        stop_with(again, signal.SIGTERM, nodes=2)
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"gup-{run_id}-" not in left, left


def test_nodes_out_of_bounds_is_a_one_line_error(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "gossamer.cli.main", "up", "--nodes", "5", "--state-dir", "s"]
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2, result.stderr
    assert "--nodes 5: expected 1 to 4" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "s").exists()
