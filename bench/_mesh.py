"""Benchmark pieces for sidecars run by the real control plane (not a benchmark itself).

`control_plane()` starts `gossamer control` on free loopback ports with a mesh.yaml
written from a list of services; `xds_sidecar()` starts `gossamer proxy` bootstrapped
with a join token and waits until it is ready; `node_gateway()` starts `gossamer
gateway` for a node on loopback and waits until it is ready; `otlp_receiver()` starts a real OTLP
trace receiver (tests/helpers/otlp_receiver.py) in its own process, so trace export
costs what it costs against a live collector. `pair_services()` and `round_order()`
lay out the fresh web/catalog pairs per configuration and round that the A/B
benchmarks (mesh_telemetry, tap_overhead) compare.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench._harness import REPO, Procs, Sidecar, free_port, wait_http

RECEIVER = """
import sys
from tests.helpers.otlp_receiver import OtlpReceiver
r = OtlpReceiver().start()
print(r.port, flush=True)
sys.stdin.read()
print(len(r.spans()), flush=True)
r.stop()
"""


def pair_services(rounds: int, tags: Sequence[str], port: int) -> list[dict[str, object]]:
    """A web and a catalog service per configuration tag and round (fresh pairs each
    round; no stale endpoint of an earlier round is ever routed to)."""
    retries = {"attempts": 1, "on": ["connect-failure", "reset"]}
    http = [{"port": port, "protocol": "http"}]
    return [
        {"name": f"{side}-{tag}{round_no}", "ports": http, "retries": retries}
        for round_no in range(rounds)
        for tag in tags
        for side in ("web", "catalog")
    ]


def round_order(round_no: int, names: Sequence[str]) -> list[str]:
    """The configurations' order in a round: rotated by the round, mirrored every other
    round, so a drift of the machine's speed hits every configuration alike."""
    shift = round_no % len(names)
    rotated = list(names[shift:]) + list(names[:shift])
    return rotated if round_no % 2 == 0 else rotated[::-1]


@dataclass
class ControlPlane:
    workdir: Path
    xds: int
    bootstrap: int
    api: int

    def token(self, service: str, namespace: str = "default") -> str:
        from gossamer.certs.ca import CertificateAuthority
        from gossamer.certs.tokens import TokenStore

        ca_dir = self.workdir / "ca"
        pin = CertificateAuthority.load(ca_dir).root_pin()
        return TokenStore(ca_dir).create(service, pin, namespace=namespace, ttl=3600)[0]


def control_plane(procs: Procs, services: Sequence[dict[str, Any]]) -> ControlPlane:
    workdir = procs.workdir
    cp = ControlPlane(workdir, free_port(), free_port(), free_port())
    mesh = {
        "trust_domain": "gossamer.local",
        "control": {
            "xds_listen": f"127.0.0.1:{cp.xds}",
            "bootstrap_listen": f"127.0.0.1:{cp.bootstrap}",
            "api_listen": f"127.0.0.1:{cp.api}",
            "ca_dir": str(workdir / "ca"),
            "data_dir": str(workdir / "data"),
        },
        "services": list(services),
    }
    config = workdir / "mesh.yaml"
    config.write_text(json.dumps(mesh))  # JSON is YAML
    procs.start([sys.executable, "-m", "gossamer.cli.main", "control", "--config", str(config)],
                "control")  # fmt: skip
    wait_http(f"http://127.0.0.1:{cp.api}/healthz")
    return cp


def xds_sidecar(
    procs: Procs,
    cp: ControlPlane,
    service: str,
    *,
    app_port: str | None = None,
    env: dict[str, str] | None = None,
    wrapper: Sequence[str] = (),
    ready_timeout: float = 60,
    extra: Sequence[str] = (),
) -> Sidecar:
    """`wrapper`: a command the sidecar runs under (e.g. valgrind and its options);
    `extra`: more flags (e.g. `--node N`)."""
    inbound, outbound, admin = free_port(), free_port(), free_port()
    args = [
        *wrapper, sys.executable, "-m", "gossamer.cli.main", "proxy", "--service", service,
        "--control", f"127.0.0.1:{cp.xds}", "--bootstrap", f"127.0.0.1:{cp.bootstrap}",
        "--token", cp.token(service), "--instance-id", f"{service}-bench",
        "--inbound-port", str(inbound), "--outbound-port", str(outbound),
        "--admin-port", str(admin), "--metrics-port", "0",  # admin serves /metrics too
    ]  # fmt: skip
    if app_port:
        args += ["--app-port", app_port]
    args += extra
    proc = procs.start_env(args, f"sidecar-{service}", env or {})
    wait_http(f"http://127.0.0.1:{admin}/ready", timeout=ready_timeout)
    return Sidecar(service, inbound, outbound, admin, proc.pid)


@dataclass
class NodeGateway:
    node: str
    port: int  # where other nodes' sidecars connect (127.0.0.1)
    admin: int
    pid: int


def node_gateway(procs: Procs, cp: ControlPlane, node: str) -> NodeGateway:
    """`gossamer gateway --node NODE` on loopback, registered at its listening port."""
    port, admin = free_port(), free_port()
    token = procs.workdir / f"gateway-{node}.token"
    token.write_text(cp.token("gateway", "gossamer-system"))
    args = [
        sys.executable, "-m", "gossamer.cli.main", "gateway", "--node", node,
        "--listen", f"127.0.0.1:{port}", "--advertise", f"127.0.0.1:{port}",
        "--control", f"127.0.0.1:{cp.xds}", "--bootstrap", f"127.0.0.1:{cp.bootstrap}",
        "--token-file", str(token), "--admin-port", str(admin), "--metrics-port", "0",
    ]  # fmt: skip
    proc = procs.start(args, f"gateway-{node}")
    wait_http(f"http://127.0.0.1:{admin}/ready", timeout=60)
    return NodeGateway(node, port, admin, proc.pid)


class OtlpReceiverProcess:
    """Stopped by `stop()`, or with the run's other processes (`procs`) if that never
    comes (an error on the way)."""

    def __init__(self, procs: Procs) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", RECEIVER],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO,
            start_new_session=True,
        )  # fmt: skip
        procs.procs.append(self.proc)  # type: ignore[arg-type]
        assert self.proc.stdout is not None
        self.endpoint = f"http://127.0.0.1:{self.proc.stdout.readline().strip()}"

    def stop(self) -> int:
        """Stop it; returns how many spans it received."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        received = int(self.proc.stdout.readline().strip() or 0)
        self.proc.wait(10)
        return received
