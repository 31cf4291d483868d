"""Compose projects as hosts of one mesh: `gossamer inject --node` and `--join`, on a real
Engine.

Issue 18's Docker test. Project A (the "first host": CA, control plane, node gateway of
node-a) runs `catalog`, an app that answers with the request headers it received;
project B (node-b, joined with `inject --join` and tokens made on A's side with `gossamer
token create --output-dir`) runs `web`. Each project has its own Docker network (its
own project name); the only ways between them are the ports A and B publish on the host
(A: control plane 15011/15012 and gateway 15443; B: gateway 15444), dialled at the
default bridge's gateway address, an address of this host every container reaches.
Project C (node-c, `orders`) joins with `--control-replica`: a replica signing with its
own intermediate (`gossamer certs intermediate` on A's side) on the etcd store A's
control plane uses (one etcd member run on this host, on the bridge gateway address).
On one machine C's replica cannot publish A's control-plane ports again, so C's project
adds a one-line override (`ports: !reset []` on gossamer-control); everything else is
the generated file.

Checked: B has no control plane and no CA; a request from web (explicit mode: its
sidecar as HTTP proxy) reaches catalog in A over mutual TLS through A's gateway, and
catalog sees web's SPIFFE ID (x-forwarded-client-cert, set by catalog's own sidecar
from the client certificate); A's gateway counts the connection for catalog; web cannot
reach catalog's container directly (separate networks); C's sidecar has its ADS stream
on C's replica (not on A's control plane) and reaches catalog with its own SPIFFE ID;
and every project leaves nothing behind.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gossamer.compose import names
from tests.helpers.docker_compose import (
    ComposeProject,
    docker,
    require_engine,
    unique_project_name,
)
from tests.helpers.etcd import ETCD_BINARY
from tests.helpers.metrics_text import metric_sum
from tests.helpers.procs import free_port

pytestmark = [pytest.mark.docker, pytest.mark.e2e, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
TD = "gossamer.local"
GATEWAY_A, GATEWAY_B, GATEWAY_C = 15443, 15444, 15445

ECHO_APP = """
import http.server, json, os
class Echo(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"name": os.environ["APP_NAME"], "headers": dict(self.headers)})
        data = body.encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", 8080), Echo).serve_forever()
"""


def app_compose(name: str) -> str:
    """One app service, the echo app above, named `name`."""
    script = json.dumps(ECHO_APP)  # a JSON string is a YAML double-quoted scalar
    return (
        "services:\n"
        f"  {name}:\n"
        "    image: gossamer:latest\n"
        "    init: true\n"  # tini as PID 1: the app stops on SIGTERM, not after the 10 s kill
        f"    entrypoint: [python3, -c, {script}]\n"
        f"    environment: {{APP_NAME: {name}}}\n"
        '    expose: ["8080"]\n'
    )


def gossamer(*args: str, cwd: Path) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "gossamer.cli.main", *args],
        cwd=cwd, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, f"gossamer {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def bridge_gateway() -> str:
    """The default bridge's gateway: an address of this host that containers reach."""
    fmt = "{{(index .IPAM.Config 0).Gateway}}"
    address = docker("network", "inspect", "bridge", "-f", fmt, timeout=30).stdout.strip()
    assert address, "the default bridge has no gateway address"
    return address


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (AssertionError, OSError, ValueError, subprocess.TimeoutExpired) as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(1)
    pytest.fail(f"{what}: not reached in {timeout:.0f} s (last: {last!r})")


class HostEtcd:
    """One etcd member on this host, on the bridge gateway's address (containers of
    every project reach it there): the store host A's control plane and host C's
    replica share."""

    def __init__(self, tmp: Path, address: str) -> None:
        self.address = address
        self.port = free_port()
        peer = free_port()
        client = f"http://{address}:{self.port}"
        wrapper = ["setpriv", "--pdeathsig", "KILL", "--"] if shutil.which("setpriv") else []
        self.log = tmp / "etcd.log"
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [*wrapper, ETCD_BINARY, "--name=host-etcd", f"--data-dir={tmp / 'etcd'}",
                 f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
                 f"--listen-peer-urls=http://127.0.0.1:{peer}",
                 f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                 f"--initial-cluster=host-etcd=http://127.0.0.1:{peer}"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        wait_for("etcd on the bridge address", self.healthy, timeout=30)

    def healthy(self) -> bool:
        url = f"http://{self.address}:{self.port}/health"
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(json.loads(response.read()).get("health") == "true")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)


class Hosts:
    """A (CA, control plane on etcd, gateway), B (joined), C (joined, with a replica)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.host = bridge_gateway()
        self.etcd: HostEtcd | None = None
        self.dirs = {n: tmp / f"host-{n}" for n in "abc"}
        for n, app in (("a", "catalog"), ("b", "web"), ("c", "orders")):
            self.dirs[n].mkdir()
            (self.dirs[n] / "compose.yaml").write_text(app_compose(app))
        self.dir_a, self.dir_b = self.dirs["a"], self.dirs["b"]
        files = {n: [d / "compose.meshed.yaml"] for n, d in self.dirs.items()}
        # one machine: C's replica cannot publish A's control-plane ports again
        (self.dirs["c"] / "single-machine.yaml").write_text(
            f"services:\n  {names.CONTROL}:\n    ports: !reset []\n"
        )
        files["c"].append(self.dirs["c"] / "single-machine.yaml")
        self.a, self.b, self.c = (
            ComposeProject(unique_project_name(f"gsm-host-{n}"), files[n], cwd=self.dirs[n])
            for n in "abc"
        )

    def tokens_for(self, host: str, service: str) -> Path:
        """On host A: the service's token (it registers its Compose name) and the
        gateway's (it registers the host's address), in a directory copied over."""
        tokens = self.dirs[host] / "tokens-from-a"
        ca = str(self.dir_a / names.CA_DIR)
        gossamer("token", "create", "--dir", ca, "--service", service, "--allow-address",
                 service, "--ttl", "1h", "--output-dir", str(tokens), cwd=self.dir_a)  # fmt: skip
        gossamer("token", "create", "--dir", ca, "--service", "gateway", "--namespace",
                 "gossamer-system", "--allow-address", self.host, "--ttl", "1h",
                 "--output-dir", str(tokens), cwd=self.dir_a)  # fmt: skip
        return tokens

    def inject(self) -> None:
        self.etcd = HostEtcd(self.tmp, self.host)
        # host A: the CA, the control plane (on etcd), node-a's gateway; B's and C's
        # compose files copied over: A's control plane declares their services too
        gossamer("inject", "compose.yaml", "--mode", "explicit", "--node", "node-a",
                 "--advertise-host", self.host, "--gateway-port", str(GATEWAY_A),
                 "--etcd", f"{self.host}:{self.etcd.port}",
                 "--services-of", str(self.dir_b / "compose.yaml"),
                 "--services-of", str(self.dirs["c"] / "compose.yaml"), cwd=self.dir_a)  # fmt: skip
        gossamer("inject", "compose.yaml", "--mode", "explicit",
                 "--join", f"{self.host}:15012", "--node", "node-b",
                 "--advertise-host", self.host, "--gateway-port", str(GATEWAY_B),
                 "--token-dir", str(self.tokens_for("b", "web")), cwd=self.dir_b)  # fmt: skip
        # host C: also its replica's intermediate (made on A) and A's mesh.yaml
        tokens = self.tokens_for("c", "orders")
        gossamer("certs", "intermediate", "--ca-dir", str(self.dir_a / names.CA_DIR),
                 "--out", str(tokens / "ca"), "--name", "host-c", cwd=self.dir_a)  # fmt: skip
        gossamer("inject", "compose.yaml", "--mode", "explicit",
                 "--join", f"{self.host}:15012", "--node", "node-c",
                 "--advertise-host", self.host, "--gateway-port", str(GATEWAY_C),
                 "--token-dir", str(tokens), "--control-replica",
                 "--intermediate", str(tokens / "ca"),
                 "--mesh-file", str(self.dir_a / names.MESH_FILE), cwd=self.dirs["c"])  # fmt: skip

    def call_catalog(self, project: ComposeProject, service: str) -> dict[str, Any]:
        code = (
            "import urllib.request; "
            "print(urllib.request.urlopen('http://catalog:8080/', timeout=10).read().decode())"
        )
        out = project.exec(service, ["python3", "-c", code], timeout=30)
        return dict(json.loads(out.stdout))

    def call_catalog_from_web(self) -> dict[str, Any]:
        return self.call_catalog(self.b, "web")

    def streams(self, project: ComposeProject) -> str:
        """The sidecars with an ADS stream on that project's control plane (its
        operator API, with the admin token from its data directory)."""
        code = (
            "import urllib.request; "
            "t=open('/var/lib/gossamer/admin-token').read().strip(); "
            "r=urllib.request.Request('http://127.0.0.1:15014/v1/sidecars', "
            "headers={'Authorization': 'Bearer '+t}); "
            "print(urllib.request.urlopen(r, timeout=5).read().decode())"
        )
        return project.exec(names.CONTROL, ["python3", "-c", code], timeout=30).stdout


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosts]:
    require_engine()
    world = Hosts(tmp_path_factory.mktemp("hosts"))
    try:
        world.inject()
        for project in (world.a, world.b, world.c):
            project.up(timeout=180)
        yield world
    finally:
        errors = []
        for project in (world.c, world.b, world.a):
            try:
                project.down_clean()
            except AssertionError as exc:
                errors.append(str(exc))
        if world.etcd is not None:
            world.etcd.close()
        assert not errors, errors


def test_a_request_crosses_from_one_project_to_the_other_over_mutual_tls(hosts: Hosts):
    meshed_b = (hosts.dir_b / "compose.meshed.yaml").read_text()
    assert names.CONTROL not in meshed_b and names.CA_SECRET not in meshed_b
    assert not (hosts.dir_b / names.CA_DIR).exists()
    services_b = {c["Service"] for c in hosts.b.ps()}
    assert services_b == {"web", "web-netns", "web-proxy", names.GATEWAY}, services_b

    answer = wait_for("web -> catalog across the projects", hosts.call_catalog_from_web)
    assert answer["name"] == "catalog"
    xfcc = answer["headers"].get("x-forwarded-client-cert", "")
    assert f"URI=spiffe://{TD}/ns/default/sa/web" in xfcc, answer["headers"]

    metrics = hosts.a.exec(names.GATEWAY, ["python3", "-c", (
        "import urllib.request; print(urllib.request.urlopen("
        "'http://127.0.0.1:15021/metrics', timeout=5).read().decode())")]).stdout  # fmt: skip
    crossed = metric_sum(metrics, "gossamer_gateway_connections_total", service="catalog.default")
    assert crossed >= 1, metrics[-2000:]


def test_the_projects_share_no_network(hosts: Hosts):
    def networks(project: ComposeProject, service: str) -> dict[str, str]:
        fmt = "{{json .NetworkSettings.Networks}}"
        raw = docker("inspect", "-f", fmt, project.container_id(service), timeout=30).stdout
        return {name: net["IPAddress"] for name, net in json.loads(raw).items()}

    nets_a = networks(hosts.a, "catalog-netns")
    nets_b = networks(hosts.b, "web-netns")
    assert not set(nets_a) & set(nets_b), (nets_a, nets_b)
    catalog_ip = next(iter(nets_a.values()))
    probe = (
        "import socket; s=socket.socket(); s.settimeout(3)\n"
        f"try:\n    s.connect(('{catalog_ip}', 15006)); print('connected')\n"
        "except OSError as e:\n    print('refused', e)"
    )
    out = hosts.b.exec("web", ["python3", "-c", probe], timeout=30).stdout
    assert out.startswith("refused"), out


def test_a_joined_replica_serves_its_hosts_sidecars(hosts: Hosts):
    """C's sidecar prefers C's replica (its ADS stream is there, not on A's control
    plane) and still reaches catalog on A with its own identity."""
    answer = wait_for("orders -> catalog across the projects",
                      lambda: hosts.call_catalog(hosts.c, "orders"))  # fmt: skip
    xfcc = answer["headers"].get("x-forwarded-client-cert", "")
    assert f"URI=spiffe://{TD}/ns/default/sa/orders" in xfcc, answer["headers"]
    on_c = wait_for("orders' stream on C's replica", lambda: "orders" in hosts.streams(hosts.c))
    assert on_c
    assert "orders" not in hosts.streams(hosts.a)
    assert "catalog" in hosts.streams(hosts.a)
    assert "catalog" not in hosts.streams(hosts.c)
