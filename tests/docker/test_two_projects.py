"""Two Compose projects, one mesh: `gossamer inject --node` and `--join` on a real Engine.

Issue 18's Docker test. Project A (the "first host": CA, control plane, node gateway of
node-a) runs `catalog`, an app that answers with the request headers it received;
project B (node-b, joined with `inject --join` and tokens made on A's side with `gossamer
token create --output-dir`) runs `web`. Each project has its own Docker network (its
own project name); the only ways between them are the ports A and B publish on the host
(A: control plane 15011/15012 and gateway 15443; B: gateway 15444), dialled at the
default bridge's gateway address, an address of this host every container reaches.

Checked: B has no control plane and no CA; a request from web (explicit mode: its
sidecar as HTTP proxy) reaches catalog in A over mutual TLS through A's gateway, and
catalog sees web's SPIFFE ID (x-forwarded-client-cert, set by catalog's own sidecar
from the client certificate); A's gateway counts the connection for catalog; web cannot
reach catalog's container directly (separate networks); and both projects leave nothing
behind.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
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
from tests.helpers.metrics_text import metric_sum

pytestmark = [pytest.mark.docker, pytest.mark.e2e, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
TD = "gossamer.local"
GATEWAY_A, GATEWAY_B = 15443, 15444

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
    script = json.dumps(ECHO_APP)  # a JSON string is a YAML double-quoted scalar
    return (
        "services:\n"
        f"  {name}:\n"
        "    image: gossamer:latest\n"
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


class TwoHosts:
    def __init__(self, tmp: Path) -> None:
        self.host = bridge_gateway()
        self.dir_a, self.dir_b = tmp / "host-a", tmp / "host-b"
        self.dir_a.mkdir()
        self.dir_b.mkdir()
        (self.dir_a / "compose.yaml").write_text(app_compose("catalog"))
        (self.dir_b / "compose.yaml").write_text(app_compose("web"))
        self.a = ComposeProject(unique_project_name("gsm-host-a"),
                                [self.dir_a / "compose.meshed.yaml"], cwd=self.dir_a)  # fmt: skip
        self.b = ComposeProject(unique_project_name("gsm-host-b"),
                                [self.dir_b / "compose.meshed.yaml"], cwd=self.dir_b)  # fmt: skip

    def inject(self) -> None:
        # host A: the CA, the control plane, node-a's gateway
        # (B's compose file copied over: A's control plane declares B's services too)
        gossamer("inject", "compose.yaml", "--mode", "explicit", "--node", "node-a",
                 "--advertise-host", self.host, "--gateway-port", str(GATEWAY_A),
                 "--services-of", str(self.dir_b / "compose.yaml"), cwd=self.dir_a)  # fmt: skip
        # on host A, for host B: web's token (it registers its Compose name) and the
        # gateway's (it registers the host's address); copied over as a directory
        tokens = self.dir_b / "tokens-from-a"
        ca = str(self.dir_a / names.CA_DIR)
        gossamer("token", "create", "--dir", ca, "--service", "web", "--allow-address", "web",
                 "--ttl", "1h", "--output-dir", str(tokens), cwd=self.dir_a)  # fmt: skip
        gossamer("token", "create", "--dir", ca, "--service", "gateway", "--namespace",
                 "gossamer-system", "--allow-address", self.host, "--ttl", "1h",
                 "--output-dir", str(tokens), cwd=self.dir_a)  # fmt: skip
        gossamer("inject", "compose.yaml", "--mode", "explicit",
                 "--join", f"{self.host}:15012", "--node", "node-b",
                 "--advertise-host", self.host, "--gateway-port", str(GATEWAY_B),
                 "--token-dir", str(tokens), cwd=self.dir_b)  # fmt: skip

    def call_catalog_from_web(self) -> dict[str, Any]:
        code = (
            "import urllib.request; "
            "print(urllib.request.urlopen('http://catalog:8080/', timeout=10).read().decode())"
        )
        out = self.b.exec("web", ["python3", "-c", code], timeout=30)
        return dict(json.loads(out.stdout))


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoHosts]:
    require_engine()
    world = TwoHosts(tmp_path_factory.mktemp("two-hosts"))
    try:
        world.inject()
        world.a.up(timeout=180)
        world.b.up(timeout=180)
        yield world
    finally:
        errors = []
        for project in (world.b, world.a):
            try:
                project.down_clean()
            except AssertionError as exc:
                errors.append(str(exc))
        assert not errors, errors


def test_a_request_crosses_from_one_project_to_the_other_over_mutual_tls(hosts: TwoHosts):
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


def test_the_projects_share_no_network(hosts: TwoHosts):
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
