"""Several `gossamer control` replicas on one real etcd, with real `gossamer proxy`
sidecars that know all of them (`--control A,B`), for failover and restart tests.

    mesh = ReplicatedMesh(tmp_path, procs, etcd_server.store_url("/t"), ["a", "b"])
    mesh.start("a"); mesh.start("b")
    cat = mesh.sidecar("catalog", mesh.app("catalog"))
    mesh.kill("a")                        # SIGKILL: its connections die with it
    mesh.start("a")                       # the same ports and data directory again

Replicas share the CA directory (so the same join tokens and root) and the registry
(etcd); each has its own data directory. Apps and sidecars are `Process`es of the
caller's `processes()` block; replicas are stopped by `close()`.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gossamer.certs.ca import CertificateAuthority
from gossamer.certs.tokens import TokenStore
from tests.helpers.control_plane import ControlPlaneProcess, write_mesh
from tests.helpers.procs import Process, free_port, gossamer_cmd, port_open, wait_for
from tests.helpers.xds_mesh import REPO, TD, XdsSidecar, http_service

# gossamer inject's default policy: a replica's failure does not reach the caller
RETRIES = {"attempts": 2, "on": ["connect-failure", "reset", 502, 503], "budget_percent": 20}
SERVICES = [http_service("web"), http_service("catalog", retries=RETRIES)]


class Replica:
    def __init__(self, root: Path, name: str, ca_dir: Path, store: str, **control: Any) -> None:
        self.name = name
        self.dir = root / f"replica-{name}"
        self.dir.mkdir()
        self.ports = {k: free_port() for k in ("insecure", "xds", "bootstrap", "api")}
        self.starts = 0
        self.process: ControlPlaneProcess | None = None
        write_mesh(
            self.dir / "mesh.yaml",
            {
                "trust_domain": TD,
                "control": {
                    "insecure_xds_listen": f"127.0.0.1:{self.ports['insecure']}",
                    "xds_listen": f"127.0.0.1:{self.ports['xds']}",
                    "bootstrap_listen": f"127.0.0.1:{self.ports['bootstrap']}",
                    "api_listen": f"127.0.0.1:{self.ports['api']}",
                    "ca_dir": str(ca_dir),
                    "store": store,
                    "lease_ttl": "3s",
                    **control,
                },
                "services": SERVICES,
            },
        )

    @property
    def xds(self) -> str:
        return f"127.0.0.1:{self.ports['xds']}"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.ports['bootstrap']}"

    def start(self) -> None:
        log = self.dir / f"control-{self.starts}.log"
        self.starts += 1
        self.process = ControlPlaneProcess(self.dir / "mesh.yaml", log)
        self.process.start(self.ports["insecure"])

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()

    def kill(self) -> None:
        """SIGKILL, as a crash or a lost node would end it."""
        assert self.process is not None and self.process.proc is not None
        self.process.proc.send_signal(signal.SIGKILL)
        self.process.proc.wait(10)
        self.process.stop()  # closes the log

    def stop(self) -> None:
        if self.process is not None and self.process.proc is not None:
            self.process.stop()


class ReplicatedMesh:
    def __init__(
        self, tmp: Path, procs: list[Process], store: str, names: Sequence[str], **control: Any
    ) -> None:
        self.tmp = tmp
        self.procs = procs
        self.ca_dir = tmp / "ca"
        self.ca = CertificateAuthority.init(self.ca_dir, TD)
        self.replicas = {n: Replica(tmp, n, self.ca_dir, store, **control) for n in names}

    def start(self, name: str) -> Replica:
        self.replicas[name].start()
        return self.replicas[name]

    def kill(self, name: str) -> None:
        self.replicas[name].kill()

    def stop(self, name: str) -> None:
        self.replicas[name].stop()

    def close(self) -> None:
        for replica in self.replicas.values():
            if replica.alive():
                replica.stop()

    def control_list(self, order: Sequence[str] | None = None) -> str:
        return ",".join(self.replicas[n].xds for n in order or self.replicas)

    def bootstrap_list(self, order: Sequence[str] | None = None) -> str:
        return ",".join(self.replicas[n].bootstrap for n in order or self.replicas)

    def token_file(self, service: str, uses: int = 1, namespace: str = "default") -> Path:
        token, _ = TokenStore(self.ca_dir).create(
            service, self.ca.root_pin(), namespace=namespace, ttl=600, uses=uses
        )
        path = self.tmp / f"{service}-{free_port()}.token"
        path.write_text(token)
        path.chmod(0o600)
        return path

    def app(self, name: str) -> int:
        port = free_port()
        args = [sys.executable, "-m", "tests.helpers.echo_app", "--port", str(port), "--name", name]
        self.procs.append(Process(args, self.tmp / f"app-{name}-{port}.log", cwd=REPO))
        wait_for(lambda: port_open(port), what=f"app {name} on {port}")
        return port

    def sidecar_args(
        self,
        service: str,
        instance: str,
        ports: dict[str, int],
        *,
        app_port: int | None,
        token_file: Path | None,
        order: Sequence[str] | None = None,
        extra: Sequence[str] = (),
    ) -> list[str]:
        args = gossamer_cmd(
            "proxy", "--service", service,
            "--control", self.control_list(order),
            "--bootstrap", self.bootstrap_list(order),
            "--instance-id", instance,
            "--inbound-port", str(ports["inbound"]), "--outbound-port", str(ports["outbound"]),
            "--admin-port", str(ports["admin"]), "--metrics-port", str(ports["metrics"]),
            "--drain-timeout", "1", "--drain-notice", "0.2",
            *extra,
        )  # fmt: skip
        if token_file is not None:
            args += ["--token-file", str(token_file)]
        if app_port is not None:
            args += ["--app-port", f"8080:{app_port}"]
        return args

    def sidecar(
        self,
        service: str,
        app_port: int | None,
        *,
        instance: str | None = None,
        ports: dict[str, int] | None = None,
        token_file: Path | None = None,
        use_token: bool = True,
        order: Sequence[str] | None = None,
        extra: Sequence[str] = (),
        wait_ready: bool = True,
        timeout: float = 30.0,
    ) -> XdsSidecar:
        ports = ports or {k: free_port() for k in ("inbound", "outbound", "admin", "metrics")}
        instance = instance or f"{service}-{ports['inbound']}"
        if use_token and token_file is None:
            token_file = self.token_file(service)
        args = self.sidecar_args(
            service, instance, ports, app_port=app_port,
            token_file=token_file if use_token else None, order=order, extra=extra,
        )  # fmt: skip
        log = self.tmp / f"sidecar-{instance}-{len(self.procs)}.log"
        proc = Process(args, log, env={"GOSSAMER_LOG_FORMAT": "json"}, cwd=REPO)
        self.procs.append(proc)
        sc = XdsSidecar(
            service,
            ports["inbound"],
            ports["outbound"],
            ports["admin"],
            proc,
            instance,
            ports["metrics"],
        )
        if wait_ready:
            wait_for(
                lambda: not proc.alive() or sc.ready(),
                timeout=timeout,
                what=f"sidecar {instance} to be ready",
            )
            assert proc.alive(), proc.output()
        return sc


def ports_of(sc: XdsSidecar) -> dict[str, int]:
    return {
        "inbound": sc.inbound,
        "outbound": sc.outbound,
        "admin": sc.admin,
        "metrics": sc.metrics,
    }


def control_plane(sc: XdsSidecar) -> dict[str, Any]:
    """The sidecar's `/config_dump` view of its control-plane replicas."""
    xds = sc.admin_json("/config_dump?resources=0")["xds"]
    return {**xds["control_plane"], "connected": xds["connected"], "target": xds["target"]}
