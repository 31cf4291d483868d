"""A real mesh with traffic of a known shape, for the observability e2e tests.

`observed_mesh(tmp)` runs a real `gossamer control` (tests/helpers/xds_mesh.py), four
real sidecars (`gossamer proxy`, bootstrapped with join tokens, mutual TLS between
them) and three apps (tests/helpers/echo_app.py) in a chain:

    driver -> [loadgen sidecar] -> [web] -> web app -> [web sidecar] -> [catalog] ->
    catalog app -> [catalog sidecar] -> [inventory] -> inventory app

The driver (a thread of the test process, standing for an app beside the `loadgen`
sidecar) sends `RATE` requests per second, paced (open loop, a few workers), to its
sidecar's outbound port with `Host: web`. Every app calls the next one through its
own sidecar; the inventory app answers every `FAIL_EVERY`-th request 500, so
inventory's success rate is exactly 80%, while catalog and web absorb the failure and
answer 200 (their success rate stays 100%). Every service therefore serves `RATE`
requests per second. Callers' identities are the SPIFFE IDs of the sidecars'
certificates (`spiffe(name)`).

`ObservedMesh.cli(...)` runs the `gossamer` CLI as a subprocess against the control
plane's operator API with the admin token. Everything stops at the end of the block,
the driver also after `max_seconds` on its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

from tests.helpers.operator_api import api_call
from tests.helpers.procs import Process, free_port, gossamer_cmd, port_open, processes, wait_for
from tests.helpers.xds_mesh import REPO, TD, XdsMesh, XdsSidecar, http_service, spiffe

__all__ = ["FAIL_EVERY", "RATE", "TD", "ObservedMesh", "observed_mesh", "spiffe"]

RATE = 20.0  # requests per second into web
FAIL_EVERY = 5  # inventory fails 1 in 5: 80% success
CHAIN = ("web", "catalog", "inventory")
CLI_DIR = tempfile.mkdtemp(prefix="gossamer-cli-")  # no mesh.yaml here to read by accident


@dataclass
class Driver:
    """Sends about `rate` requests per second to `Host: web` through `port` (the
    loadgen sidecar's outbound port) until stopped or `max_seconds` have passed."""

    port: int
    rate: float = RATE
    max_seconds: float = 600.0
    workers: int = 6
    statuses: dict[int, int] = field(default_factory=dict)
    sent: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _local: threading.local = field(default_factory=threading.local)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    def _one(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", "/", headers={"Host": "web"})
            response = conn.getresponse()
            response.read()
            status = response.status
        except OSError:
            conn.close()
            self._local.conn = None
            status = 0
        with self._lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1

    def _run(self) -> None:
        interval = 1.0 / self.rate
        deadline = time.monotonic() + self.max_seconds
        next_at = time.monotonic()
        with ThreadPoolExecutor(self.workers, thread_name_prefix="driver") as pool:
            while not self._stop.is_set() and time.monotonic() < deadline:
                pool.submit(self._one)
                self.sent += 1
                next_at += interval
                self._stop.wait(max(0.0, next_at - time.monotonic()))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="driver", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)


@dataclass
class ObservedMesh:
    mesh: XdsMesh
    sidecars: dict[str, XdsSidecar]
    driver: Driver
    admin_token: str
    started: float = field(default_factory=time.monotonic)

    @property
    def api_port(self) -> int:
        return self.mesh.ports["api"]

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def api(self, path: str, token: str | None = None, **kw: Any) -> tuple[int, Any]:
        return api_call(self.api_port, path, token or self.admin_token, **kw)

    def viewer_token(self, name: str) -> str:
        status, made = self.api(
            "/v1/api-tokens", method="POST", body={"name": name, "role": "viewer"}
        )
        assert status == 201, made
        return str(made["token"])

    def cli(self, *args: str, token: str | None = None, api: bool = True) -> tuple[int, str, str]:
        """`gossamer ARGS` in a folder without a mesh.yaml; with `api`, pointed at this
        control plane's operator API with the admin token (or `token`)."""
        extra = ["--api", self.api_url] if api else []
        env = {"GOSSAMER_API_TOKEN": token or self.admin_token}
        out = subprocess.run(
            [*gossamer_cmd(*args), *extra],
            capture_output=True, text=True, timeout=60, cwd=CLI_DIR,
            env={**os.environ, **env},
        )  # fmt: skip
        return out.returncode, out.stdout, out.stderr

    def cli_json(self, *args: str, **kw: Any) -> Any:
        code, out, err = self.cli(*args, "-o", "json", **kw)
        assert code == 0, err
        return json.loads(out)

    def wait_until_traffic_seen(self, seconds: float) -> None:
        """Until the driver has run `seconds` (and some requests came back 200)."""
        left = seconds - (time.monotonic() - self.started)
        if left > 0:
            time.sleep(left)
        assert self.driver.statuses.get(200, 0) > 0, self.driver.statuses


def _app(mesh: XdsMesh, name: str, port: int, *extra: str) -> None:
    args = [sys.executable, "-m", "tests.helpers.echo_app", "--port", str(port), "--name", name]
    mesh.procs.append(Process([*args, *extra], mesh.tmp / f"app-{name}.log", cwd=REPO))
    wait_for(lambda: port_open(port), what=f"app {name} on {port}")


def _chain(
    mesh: XdsMesh,
    sidecar_args: dict[str, list[str]],
    env: dict[str, str],
    fail_every: int,
    delay_ms: float,
) -> dict[str, XdsSidecar]:
    """inventory, then catalog, then web: each app calls the next through its own
    sidecar's outbound port, known once the sidecar is started."""
    sidecars: dict[str, XdsSidecar] = {}
    upstream: str | None = None
    for name in reversed(CHAIN):
        port = free_port()
        extra_args = sidecar_args.get(name, [])
        sc = mesh.sidecar(name, port, wait_ready=False, name=f"{name}-1", extra=extra_args, env=env)
        extra = []
        if name == "inventory":
            extra += ["--fail-every", str(fail_every), "--delay-ms", str(delay_ms)]
        if upstream is not None:
            extra += ["--upstream", f"http://127.0.0.1:{sc.outbound}", "--upstream-host", upstream]
        _app(mesh, name, port, *extra)
        wait_for(
            lambda sc=sc: not sc.process.alive() or sc.ready(),  # type: ignore[misc]
            timeout=60,
            what=f"sidecar {sc.instance} to be ready",
        )
        assert sc.process.alive(), sc.process.output()
        sidecars[name] = sc
        upstream = name
    return sidecars


def _wait_for_routes(loadgen: XdsSidecar) -> None:
    """Until a request crosses the whole chain (every sidecar has the others' endpoints)."""

    def crossed() -> bool:
        status, body = loadgen.get("web", "/", timeout=5)
        return status == 200 and b"web <- 200" in body

    wait_for(crossed, timeout=60, interval=0.3, what="a request across web->catalog->inventory")


@contextlib.contextmanager
def observed_mesh(
    tmp: Path,
    *,
    observability: dict[str, Any] | None = None,
    sidecar_args: dict[str, list[str]] | None = None,
    sidecar_env: dict[str, str] | None = None,
    drive: bool = True,
    fail_every: int = FAIL_EVERY,
    delay_ms: float = 0.0,
    **control: Any,
) -> Iterator[ObservedMesh]:
    """The mesh above; `observability` is mesh.yaml's section, `sidecar_args` extra
    `gossamer proxy` arguments by service, `sidecar_env` every sidecar's extra
    environment, `control` extra `control:` settings. With `drive=False` no traffic
    but the one request that checks the chain is up; `fail_every=0`: inventory never
    fails; `delay_ms`: inventory's app waits that long before each answer."""
    with processes() as procs:
        services = [http_service(name) for name in (*CHAIN, "loadgen")]
        mesh = XdsMesh(tmp, procs, services, **control)
        if observability:
            mesh.observability = observability
            mesh.set_services(services)
        mesh.start_control()
        sidecars = _chain(mesh, sidecar_args or {}, sidecar_env or {}, fail_every, delay_ms)
        loadgen = mesh.sidecar(
            "loadgen",
            name="loadgen-1",
            env=sidecar_env,
            extra=(sidecar_args or {}).get("loadgen", []),
        )
        sidecars["loadgen"] = loadgen
        _wait_for_routes(loadgen)
        admin = (tmp / "data" / "admin-token").read_text().strip()
        driver = Driver(loadgen.outbound)
        if drive:
            driver.start()
        try:
            yield ObservedMesh(mesh, sidecars, driver, admin)
        finally:
            driver.stop()
