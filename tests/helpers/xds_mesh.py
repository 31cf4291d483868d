"""A mesh of real processes driven by the control plane, for sidecar e2e tests.

`XdsMesh` runs `gossamer control` (every port a free loopback port, mesh.yaml written
from a dict, CA and data in the test's directory), small HTTP apps
(tests/helpers/echo_app.py) and `gossamer proxy` sidecars bootstrapped with real join
tokens. Everything it starts stops at the end of the `processes()` block it was given.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gossamer.certs.ca import CertificateAuthority
from gossamer.certs.tokens import TokenStore
from tests.helpers.control_plane import wait_serving, write_mesh
from tests.helpers.metrics_text import metric_sum
from tests.helpers.procs import Process, free_port, gossamer_cmd, http_get, port_open, wait_for

REPO = Path(__file__).resolve().parents[2]
TD = "gossamer.local"


def spiffe(service: str, namespace: str = "default") -> str:
    return f"spiffe://{TD}/ns/{namespace}/sa/{service}"


@dataclass
class XdsSidecar:
    service: str
    inbound: int
    outbound: int
    admin: int
    process: Process
    instance: str
    metrics: int = 0  # the metrics-only port (all interfaces)

    def admin_get(self, path: str) -> tuple[int, bytes]:
        return http_get(f"http://127.0.0.1:{self.admin}{path}")

    def admin_json(self, path: str) -> Any:
        status, body = self.admin_get(path)
        assert status in (200, 503), (status, body)
        return json.loads(body)

    def ready(self) -> bool:
        return self.admin_get("/ready")[0] == 200

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a metric's samples whose labels include `labels`."""
        _, text = self.admin_get("/metrics")
        return metric_sum(text.decode(), name, **labels)

    def endpoints(self, cluster_prefix: str) -> list[dict[str, Any]]:
        for cluster in self.admin_json("/clusters")["clusters"]:
            if cluster["name"].startswith(cluster_prefix):
                return list(cluster["endpoints"])
        return []

    def get(
        self,
        host: str,
        path: str = "/",
        timeout: float = 5.0,
        headers_extra: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        """A request from the app beside this sidecar, through its outbound port."""
        headers = {"Host": host, **(headers_extra or {})}
        return http_get(f"http://127.0.0.1:{self.outbound}{path}", timeout, headers)


class XdsMesh:
    def __init__(
        self, tmp: Path, procs: list[Process], services: list[dict[str, Any]], **control: Any
    ) -> None:
        self.tmp = tmp
        self.procs = procs
        self.ports = {name: free_port() for name in ("xds", "bootstrap", "api", "insecure")}
        self.control_settings = {
            "xds_listen": f"127.0.0.1:{self.ports['xds']}",
            "bootstrap_listen": f"127.0.0.1:{self.ports['bootstrap']}",
            "api_listen": f"127.0.0.1:{self.ports['api']}",
            "insecure_xds_listen": f"127.0.0.1:{self.ports['insecure']}",
            "ca_dir": str(tmp / "ca"),
            "data_dir": str(tmp / "data"),
            "lease_ttl": "3s",
            **control,
        }
        self.config = tmp / "mesh.yaml"
        self.observability: dict[str, Any] = {}  # mesh.yaml's section, when set
        self.set_services(services)
        self.control: Process | None = None
        self.restarts = 0

    # -- control plane -----------------------------------------------------------------
    def set_services(self, services: list[dict[str, Any]]) -> None:
        """Write mesh.yaml (the running control plane reloads it within moments)."""
        self.services = services
        doc = {"trust_domain": TD, "control": self.control_settings, "services": services}
        if self.observability:
            doc["observability"] = self.observability
        write_mesh(self.config, doc)

    def start_control(self) -> Process:
        """`gossamer control` as one of the block's processes (stopped with them)."""
        log = self.tmp / f"control-{self.restarts}.log"
        self.restarts += 1
        args = gossamer_cmd("control", "--config", str(self.config), "--reload-interval", "0.2")
        self.control = Process(args, log, env={"GOSSAMER_LOG_FORMAT": "json"}, cwd=REPO)
        self.procs.append(self.control)
        control = self.control
        wait_for(
            lambda: not control.alive() or port_open(self.ports["api"]),
            timeout=30,
            what="the control plane",
        )
        assert control.alive(), control.output()
        wait_serving(f"127.0.0.1:{self.ports['insecure']}", 20)
        return control

    def stop_control(self) -> None:
        if self.control is not None:
            self.control.stop()
            self.control = None

    def token(self, service: str, namespace: str = "default", ttl: float = 600.0) -> str:
        ca_dir = self.tmp / "ca"
        pin = CertificateAuthority.load(ca_dir).root_pin()
        token, _ = TokenStore(ca_dir).create(service, pin, namespace=namespace, ttl=ttl)
        return token

    def status(self) -> Any:
        """`gossamer status -o json`, the operator's view."""
        token = (self.tmp / "data" / "admin-token").read_text().strip()
        out = subprocess.run(
            gossamer_cmd(
                "status", "--api", f"http://127.0.0.1:{self.ports['api']}", "--token", token,
                "-o", "json",
            ),
            capture_output=True, text=True, timeout=30, cwd=REPO,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    # -- apps and sidecars -------------------------------------------------------------
    def app(self, name: str, port: int | None = None) -> int:
        port = port or free_port()
        args = [sys.executable, "-m", "tests.helpers.echo_app", "--port", str(port), "--name", name]
        self.procs.append(Process(args, self.tmp / f"app-{name}-{port}.log", cwd=REPO))
        wait_for(lambda: port_open(port), what=f"app {name} on {port}")
        return port

    def sidecar(
        self,
        service: str,
        app_port: int | None = None,
        *,
        token: str | None = None,
        env: dict[str, str] | None = None,
        extra: Sequence[str] = (),
        wait_ready: bool = True,
        name: str | None = None,
    ) -> XdsSidecar:
        inbound, outbound, admin, metrics = free_port(), free_port(), free_port(), free_port()
        instance = name or f"{service}-{inbound}"
        args = gossamer_cmd(
            "proxy", "--service", service,
            "--control", f"127.0.0.1:{self.ports['xds']}",
            "--bootstrap", f"127.0.0.1:{self.ports['bootstrap']}",
            "--token", token or self.token(service),
            "--instance-id", instance,
            "--inbound-port", str(inbound), "--outbound-port", str(outbound),
            "--admin-port", str(admin), "--metrics-port", str(metrics),
            "--drain-timeout", "3", "--drain-notice", "0.5",
            *extra,
        )  # fmt: skip
        if app_port is not None:
            args += ["--app-port", f"8080:{app_port}"]
        environment = {"GOSSAMER_LOG_FORMAT": "json", **(env or {})}
        proc = Process(args, self.tmp / f"sidecar-{instance}.log", env=environment, cwd=REPO)
        self.procs.append(proc)
        sc = XdsSidecar(service, inbound, outbound, admin, proc, instance, metrics)
        if wait_ready:
            wait_for(
                lambda: not proc.alive() or sc.ready(),
                timeout=30,
                what=f"sidecar {instance} to be ready",
            )
            assert proc.alive(), proc.output()
        return sc


def http_service(name: str, port: int = 8080, **policy: Any) -> dict[str, Any]:
    return {"name": name, "ports": [{"port": port, "protocol": "http"}], **policy}
