"""A small mesh of real processes for sidecar e2e tests: apps and sidecars on loopback.

Sidecars run as `gossamer proxy --static-config` with certificates from the real mesh CA
(tests.helpers.pki); every port is a free ephemeral one. `Mesh` stops everything it
started. Config documents are built with `upstream()` and written as JSON (a YAML
subset), so a test can rewrite one and send SIGHUP to swap it.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers.metrics_text import metric_sum
from tests.helpers.pki import TRUST_DOMAIN, Workload, make_ca, make_workload
from tests.helpers.procs import Process, free_port, gossamer_cmd, http_get, port_open, wait_for

REPO = Path(__file__).resolve().parents[2]
METRICS_PORT = 15090  # gossamer.contract.ports.METRICS_PORT


def spiffe(service: str, namespace: str = "default") -> str:
    return f"spiffe://{TRUST_DOMAIN}/ns/{namespace}/sa/{service}"


@dataclass
class Sidecar:
    service: str
    inbound: int
    outbound: int
    admin: int
    process: Process
    config_path: Path
    workload: Workload
    config: dict[str, Any] = field(default_factory=dict)
    metrics: int = 0  # the metrics-only port (all interfaces)

    def admin_get(self, path: str) -> tuple[int, bytes]:
        return http_get(f"http://127.0.0.1:{self.admin}{path}")

    def admin_json(self, path: str) -> Any:
        status, body = self.admin_get(path)
        assert status == 200, (status, body)
        return json.loads(body)

    def reconfigure(self, config: dict[str, Any]) -> None:
        """Write a new configuration and SIGHUP the sidecar; wait until it is applied."""
        before = self.admin_json("/config_dump")["generation"]
        self.config = config
        self.config_path.write_text(json.dumps(config))
        self.process.proc.send_signal(signal.SIGHUP)
        wait_for(
            lambda: self.admin_json("/config_dump")["generation"] > before,
            what=f"{self.service} to apply its new configuration",
        )

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a metric's samples whose labels include `labels`."""
        _, text = self.admin_get("/metrics")
        return metric_sum(text.decode(), name, **labels)


def upstream(
    service: str,
    endpoints: Sequence[tuple[str, int] | tuple[str, int, str]],
    *,
    port: int = 8080,
    protocol: str = "http",
    lb_policy: str = "round_robin",
    hash_header: str | None = None,
    retry: dict[str, Any] | None = None,
    timeout: str = "15s",
    identity: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A cluster and its virtual host for a mesh service."""
    name = f"outbound|{port}||{service}"
    cluster: dict[str, Any] = {
        "name": name,
        "service": service,
        "port": port,
        "protocol": protocol,
        "identity": identity or spiffe(service),
        "lb_policy": lb_policy,
        "endpoints": [
            {"address": ep[0], "port": ep[1], "zone": ep[2] if len(ep) > 2 else ""}
            for ep in endpoints
        ],
    }
    if hash_header:
        cluster["hash_header"] = hash_header
    route: dict[str, Any] = {
        "name": f"{service}-default",
        "clusters": [{"name": name}],
        "timeout": timeout,
    }
    if retry is not None:
        route["retry"] = retry
    vhost = {
        "name": service,
        "domains": [service, f"{service}:{port}", f"{service}.default.svc"],
        "routes": [route],
    }
    return cluster, vhost


def config_doc(
    service: str,
    *,
    upstreams: Sequence[tuple[dict[str, Any], dict[str, Any]]] = (),
    app_ports: Sequence[tuple[int, str] | tuple[int, str, int]] = (),
    allowed: Sequence[str] | None = None,
    zone: str = "",
    mode: str = "explicit",
    version: str = "1",
) -> dict[str, Any]:
    authz: dict[str, Any] = {"allow_all_mesh": True}
    if allowed is not None:
        authz = {"allow_all_mesh": False, "allowed": list(allowed)}
    return {
        "node": {"service": service, "zone": zone, "trust_domain": TRUST_DOMAIN},
        "listeners": {"mode": mode},
        "inbound": {
            "app_ports": [
                {"port": ap[0], "protocol": ap[1], "target_port": ap[2] if len(ap) > 2 else 0}
                for ap in app_ports
            ],
            "authorization": authz,
        },
        "clusters": [c for c, _ in upstreams],
        "routes": {"virtual_hosts": [v for _, v in upstreams]},
        "versions": {"static": version},
    }


class Mesh:
    def __init__(self, tmp: Path, procs: list[Process]) -> None:
        self.tmp = tmp
        self.procs = procs
        self.ca = make_ca(tmp / "ca")

    def workload(self, service: str) -> Workload:
        return make_workload(self.ca, service, self.tmp / "certs")

    def app(self, name: str, *, tcp: bool = False, port: int | None = None) -> int:
        port = port or free_port()
        args = [sys.executable, "-m", "tests.helpers.echo_app", "--port", str(port), "--name", name]
        if tcp:
            args.append("--tcp")
        self.procs.append(Process(args, self.tmp / f"app-{name}-{port}.log", cwd=REPO))
        wait_for(lambda: port_open(port), what=f"app {name} on {port}")
        return port

    def sidecar(
        self,
        service: str,
        config: dict[str, Any],
        *,
        wait_ready: bool = True,
        extra_args: Sequence[str] = (),
        user: int | None = None,
        netns: str | None = None,
        ports: tuple[int, int, int] | None = None,
    ) -> Sidecar:
        inbound, outbound, admin = ports or (free_port(), free_port(), free_port())
        # in its own namespace a sidecar keeps the default metrics port
        metrics = free_port() if netns is None else METRICS_PORT
        workload = self.workload(service)
        path = self.tmp / f"{service}-{inbound}.json"
        path.write_text(json.dumps(config))
        args = gossamer_cmd(
            "proxy",
            "--service", service,
            "--static-config", str(path),
            "--cert", str(workload.chain_file),
            "--key", str(workload.key_file),
            "--bundle", str(workload.bundle_file),
            "--inbound-port", str(inbound),
            "--outbound-port", str(outbound),
            "--admin-port", str(admin),
            "--metrics-port", str(metrics),
            "--trust-domain", TRUST_DOMAIN,
            "--drain-timeout", "3",
            *extra_args,
        )  # fmt: skip
        if user is not None:
            args = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *args]
            for f in (path, workload.chain_file, workload.key_file, workload.bundle_file):
                f.chmod(0o644)
        if netns is not None:
            args = ["ip", "netns", "exec", netns, *args]
        proc = Process(args, self.tmp / f"sidecar-{service}-{inbound}.log", cwd=REPO)
        self.procs.append(proc)
        sc = Sidecar(service, inbound, outbound, admin, proc, path, workload, config, metrics)
        if wait_ready and netns is None:
            wait_for(
                lambda: sc.admin_get("/ready")[0] == 200 or not proc.alive(),
                what=f"sidecar {service} to be ready",
            )
            assert proc.alive(), proc.output()
        return sc
