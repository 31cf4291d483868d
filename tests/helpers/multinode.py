"""A mesh over simulated nodes (tests/helpers/nodes.py), as real processes: the control
plane on the bridge address, a `gossamer gateway` per node, apps and `gossamer proxy`
sidecars with `--node`, every node's processes in its namespace.

    with SimNodes(3, open_ports=[GW_PORT]) as nodes, processes() as procs:
        w = World(tmp, procs, nodes, zones={1: "zone-a", 2: "zone-a", 3: "zone-b"})
        w.start_control()
        w.gateway(2)
        w.sidecar(2, "catalog", "catalog-2", w.app(2, "catalog-2"))
        web = w.sidecar(1, "web", "web", None)
        w.requests(web, 10)             # [(status, body)] through web's outbound port
        w.load(web)                     # steady GETs in node 1 until .stop()

mesh.yaml has `web` and `catalog` (allowing only web, with `catalog_policy`: by default
retries on connect failures, resets, 502 and 503); the control plane's lease TTL is 3 s.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gossamer.certs.ca import CertificateAuthority
from gossamer.certs.tokens import TokenStore
from tests.helpers.control_plane import wait_serving, write_mesh
from tests.helpers.metrics_text import metric_sum
from tests.helpers.nodes import SimNodes
from tests.helpers.procs import Process, free_port, gossamer_cmd, port_open, wait_for

REPO = Path(__file__).resolve().parents[2]
TD = "gossamer.local"
GW_PORT = 15443
GW_ADMIN = 15021
ZONES = {1: "zone-a", 2: "zone-a", 3: "zone-b"}
CATALOG = "outbound|8080||catalog.default"
CATALOG_POLICY: dict[str, Any] = {
    "retries": {"attempts": 2, "on": ["connect-failure", "reset", "502", "503"]},
}


def spiffe(service: str) -> str:
    return f"spiffe://{TD}/ns/default/sa/{service}"


@dataclass
class NodeSidecar:
    name: str
    node: int
    outbound: int
    admin: int
    inbound: int
    process: Process


class World:
    def __init__(
        self,
        tmp: Path,
        procs: list[Process],
        nodes: SimNodes,
        *,
        zones: Mapping[int, str] = ZONES,
        catalog_policy: Mapping[str, Any] = CATALOG_POLICY,
    ) -> None:
        self.tmp, self.procs, self.nodes, self.zones = tmp, procs, nodes, dict(zones)
        self.next_port = 20000
        self.ports = {"xds": free_port(), "bootstrap": free_port(), "api": free_port()}
        self.ports["insecure"] = free_port()
        self.ca_dir = tmp / "ca"
        services = [
            {"name": "web", "ports": [{"port": 8080, "protocol": "http"}]},
            {
                "name": "catalog",
                "ports": [{"port": 8080, "protocol": "http"}],
                "authorization": {"allow": [spiffe("web")]},
                **catalog_policy,
            },
        ]
        control = {
            "xds_listen": f"{nodes.host}:{self.ports['xds']}",
            "bootstrap_listen": f"{nodes.host}:{self.ports['bootstrap']}",
            "api_listen": f"127.0.0.1:{self.ports['api']}",
            "insecure_xds_listen": f"127.0.0.1:{self.ports['insecure']}",
            "ca_dir": str(self.ca_dir),
            "data_dir": str(tmp / "data"),
            "lease_ttl": "3s",
        }
        write_mesh(
            tmp / "mesh.yaml", {"trust_domain": TD, "control": control, "services": services}
        )
        self.sidecars: dict[str, NodeSidecar] = {}
        self.gateways: dict[int, Process] = {}

    # -- plumbing ------------------------------------------------------------------------
    def port(self) -> int:
        self.next_port += 1
        return self.next_port

    def run_in(
        self, node: int, *args: str, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.nodes.exec(node, args), capture_output=True, text=True,
                              timeout=timeout, cwd=REPO)  # fmt: skip

    def http(self, node: int, url: str) -> tuple[int, str]:
        out = self.run_in(node, "curl", "-s", "--max-time", "5", "-w", "\n%{http_code}", url)
        body, _, code = out.stdout.rpartition("\n")
        return int(code or 0), body

    def token_file(self, service: str, namespace: str = "default") -> Path:
        pin = CertificateAuthority.load(self.ca_dir).root_pin()
        token, _ = TokenStore(self.ca_dir).create(service, pin, namespace=namespace, ttl=600)
        path = self.tmp / f"{service}-{namespace}-{time.monotonic_ns()}.token"
        path.write_text(token)
        return path

    def spawn(self, node: int, name: str, args: list[str]) -> Process:
        env = {"GOSSAMER_LOG_FORMAT": "json"}
        proc = Process(self.nodes.exec(node, args), self.tmp / f"{name}.log", env=env, cwd=REPO)
        self.procs.append(proc)
        return proc

    # -- the mesh ------------------------------------------------------------------------
    def start_control(self) -> None:
        args = gossamer_cmd("control", "--config", str(self.tmp / "mesh.yaml"))
        proc = Process(args, self.tmp / "control.log", env={"GOSSAMER_LOG_FORMAT": "json"},
                       cwd=REPO)  # fmt: skip
        self.procs.append(proc)
        wait_for(lambda: not proc.alive() or port_open(self.ports["api"]), timeout=30,
                 what="the control plane")  # fmt: skip
        assert proc.alive(), proc.output()
        wait_serving(f"127.0.0.1:{self.ports['insecure']}", 20)

    def gateway(self, node: int) -> Process:
        address = self.nodes.address(node)
        proc = self.spawn(node, f"gateway-{node}", gossamer_cmd(
            "gateway", "--node", f"node-{node}", "--zone", self.zones[node],
            "--listen", f"0.0.0.0:{GW_PORT}", "--advertise", f"{address}:{GW_PORT}",
            "--control", f"{self.nodes.host}:{self.ports['xds']}",
            "--bootstrap", f"{self.nodes.host}:{self.ports['bootstrap']}",
            "--token-file", str(self.token_file("gateway", "gossamer-system")),
            "--admin-port", str(GW_ADMIN), "--metrics-port", "15020", "--hello-timeout", "2",
        ))  # fmt: skip
        self.gateways[node] = proc
        wait_for(lambda: not proc.alive() or self.http(node, self.gw_url(""))[0] == 200,
                 timeout=30, what=f"gateway of node {node} ready")  # fmt: skip
        assert proc.alive(), proc.output()
        return proc

    def gw_url(self, path: str) -> str:
        return (
            f"http://127.0.0.1:{GW_ADMIN}/ready"
            if not path
            else f"http://127.0.0.1:{GW_ADMIN}{path}"
        )

    def gw_metric(self, node: int, name: str, **labels: str) -> float:
        return metric_sum(self.http(node, self.gw_url("/metrics"))[1], name, **labels)

    def app(self, node: int, name: str) -> int:
        port = self.port()
        self.spawn(node, f"app-{name}", [sys.executable, "-m", "tests.helpers.echo_app",
                                         "--port", str(port), "--name", name])  # fmt: skip
        wait_for(lambda: self.run_in(node, "curl", "-s", f"http://127.0.0.1:{port}/").returncode == 0,
                 what=f"app {name}")  # fmt: skip
        return port

    def sidecar(self, node: int, service: str, name: str, app_port: int | None) -> NodeSidecar:
        inbound, outbound, admin, metrics = self.port(), self.port(), self.port(), self.port()
        args = gossamer_cmd(
            "proxy", "--service", service, "--node", f"node-{node}", "--zone", self.zones[node],
            "--control", f"{self.nodes.host}:{self.ports['xds']}",
            "--bootstrap", f"{self.nodes.host}:{self.ports['bootstrap']}",
            "--token-file", str(self.token_file(service)), "--instance-id", name,
            "--inbound-port", str(inbound), "--outbound-port", str(outbound),
            "--admin-port", str(admin), "--metrics-port", str(metrics),
            "--drain-timeout", "3", "--drain-notice", "1",
        )  # fmt: skip
        if app_port is not None:
            args += ["--app-port", f"8080:{app_port}"]
        proc = self.spawn(node, f"sidecar-{name}", args)
        sc = NodeSidecar(name, node, outbound, admin, inbound, proc)
        wait_for(lambda: not proc.alive() or self.http(node, f"http://127.0.0.1:{admin}/ready")[0] == 200,
                 timeout=30, what=f"sidecar {name} ready")  # fmt: skip
        assert proc.alive(), proc.output()
        self.sidecars[name] = sc
        return sc

    def endpoints(self, sc: NodeSidecar, cluster: str = CATALOG) -> list[dict[str, Any]]:
        _, body = self.http(sc.node, f"http://127.0.0.1:{sc.admin}/clusters")
        try:
            found = json.loads(body)["clusters"]
        except (ValueError, KeyError):
            return []
        for c in found:
            if c["name"] == cluster:
                return list(c["endpoints"])
        return []

    def requests(self, sc: NodeSidecar, count: int, path: str = "/") -> list[tuple[int, str]]:
        out = self.run_in(sc.node, sys.executable, "-m", "tests.helpers.ns_client",
                          "--port", str(sc.outbound), "--host", "catalog:8080",
                          "--path", path, "--count", str(count), timeout=120)  # fmt: skip
        return [tuple(json.loads(line)) for line in out.stdout.splitlines()]

    def load(self, sc: NodeSidecar, interval: float = 0.01) -> NodeLoad:
        """Steady GETs to catalog from `sc`'s node, one after another, until `stop()`."""
        return NodeLoad(self, sc, interval)

    # -- the operator's view ----------------------------------------------------------
    def admin_token(self) -> str:
        return (self.tmp / "data" / "admin-token").read_text().strip()

    def api(self, path: str) -> Any:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.ports['api']}{path}",
            headers={"Authorization": f"Bearer {self.admin_token()}"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    def status(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`gossamer status` against the control plane's API (add `-o json` for JSON)."""
        api = f"http://127.0.0.1:{self.ports['api']}"
        return subprocess.run(
            gossamer_cmd("status", "--api", api, "--token", self.admin_token(), *args),
            capture_output=True, text=True, timeout=30, cwd=REPO,
        )  # fmt: skip

    def without_local_catalog(self) -> None:
        """Stop catalog-1 (web's own node) so web's catalog traffic crosses nodes."""
        local = self.sidecars.get("catalog-1")
        if local is not None and local.process.alive():
            local.process.signal(signal.SIGTERM)
            wait_for(lambda: not local.process.alive(), timeout=20, what="catalog-1 stopped")
        web = self.sidecars["web"]
        wait_for(lambda: not any(e["node"] == "node-1" for e in self.endpoints(web)),
                 timeout=20, what="catalog-1 gone from web's EDS")  # fmt: skip


class NodeLoad:
    """tests/helpers/ns_client.py in a node's namespace, sending GETs to catalog through
    a sidecar's outbound port until stopped; `stop()` returns the outcomes counted, and
    `outcomes`, `seconds` and `started` then hold each request's (status, body), its
    duration and its start (Unix time), in order."""

    def __init__(self, world: World, sc: NodeSidecar, interval: float) -> None:
        self.until = world.tmp / f"stop-load-{time.monotonic_ns()}"
        self.outcomes: list[tuple[int, str]] = []
        self.seconds: list[float] = []
        self.started: list[float] = []
        self.proc = subprocess.Popen(
            world.nodes.exec(sc.node, [sys.executable, "-m", "tests.helpers.ns_client",
                                       "--port", str(sc.outbound), "--host", "catalog:8080",
                                       "--until", str(self.until), "--interval", str(interval),
                                       "--timed"]),
            stdout=subprocess.PIPE, text=True, cwd=REPO,
        )  # fmt: skip

    def stop(self) -> Counter[tuple[int, str]]:
        self.until.write_text("stop")
        try:
            out, _ = self.proc.communicate(timeout=60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
        rows = [json.loads(line) for line in out.splitlines()]
        self.outcomes = [(int(r[0]), str(r[1])) for r in rows]
        self.seconds = [float(r[2]) for r in rows]
        self.started = [float(r[3]) for r in rows]
        return Counter(self.outcomes)
