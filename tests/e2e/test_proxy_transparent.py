"""Transparent mode inside network namespaces this test creates (needs root).

    netns A (client)                      netns B (server)               netns C (outside)
    curl / socket -> iptables REDIRECT    iptables REDIRECT -> sidecar   plain app :9090
      -> web sidecar :15001 (uid 1337)      inbound :15006 -> app :8080
         SO_ORIGINAL_DST 10.77.x.2:8080 ==mTLS==> 10.77.x.2:8080
                                                 app tcp :5432

The app in A dials B's address and port as if there were no mesh; `gossamer proxy
iptables install` redirects it, the sidecar recovers the original destination and
carries the request over mTLS; a destination outside the mesh (C) passes through
unchanged; plaintext sent straight to B's app port is captured by B's sidecar and
refused. A gRPC client dialling B's gRPC port is detected by its h2c preface and carried
over h2 with ALPN to B's app. The namespaces are deleted afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from tests.helpers.mesh import REPO, Mesh, config_doc, spiffe, upstream
from tests.helpers.procs import Process, gossamer_cmd, processes, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.root]

PROXY_UID = 1337
TAG = f"g{os.getpid() % 100000}"
NS = {name: f"{TAG}{name}" for name in ("a", "b", "c")}
SUBNET = (os.getpid() % 200) + 20
GRPC_PORT = 50051
GRPC_CALL = """
import grpc, sys
channel = grpc.insecure_channel(sys.argv[1])
call = channel.unary_unary("/test.Echo/Unary")
reply, info = call.with_call(b"hi", timeout=10)
print(reply.decode(), dict(info.trailing_metadata())["x-trailer"])
"""


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, capture_output=True, text=True, timeout=30)
    if check:
        assert result.returncode == 0, (args, result.stderr)
    return result


def in_ns(
    ns: str, *args: str, user: int | None = None, check: bool = True, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    prefix = ["ip", "netns", "exec", NS[ns]]
    if user is not None:
        prefix += ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"]
    result = subprocess.run(
        [*prefix, *args], capture_output=True, text=True, timeout=30, input=stdin
    )
    if check:
        assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result


def ip(ns: str, n: int) -> str:
    return f"10.{77 + (1 if ns == 'c' else 0)}.{SUBNET}.{n}"


@pytest.fixture(scope="module")
def namespaces() -> Iterator[None]:
    assert os.geteuid() == 0, "transparent mode tests create network namespaces: run as root"
    try:
        for ns in NS.values():
            sh("ip", "netns", "add", ns)
        for peer in ("b", "c"):
            left, right = f"{TAG}a{peer}", f"{TAG}{peer}a"
            sh("ip", "link", "add", left, "type", "veth", "peer", "name", right)
            sh("ip", "link", "set", left, "netns", NS["a"])
            sh("ip", "link", "set", right, "netns", NS[peer])
            sh("ip", "-n", NS["a"], "addr", "add", f"{ip(peer, 1)}/24", "dev", left)
            sh("ip", "-n", NS[peer], "addr", "add", f"{ip(peer, 2)}/24", "dev", right)
            sh("ip", "-n", NS["a"], "link", "set", left, "up")
            sh("ip", "-n", NS[peer], "link", "set", right, "up")
        for ns in NS.values():
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield
    finally:
        for ns in NS.values():
            sh("ip", "netns", "del", ns, check=False)


def _ready(ns: str) -> bool:
    return in_ns(ns, "curl", "-sf", "http://127.0.0.1:15000/ready", check=False).returncode == 0


class World:
    def __init__(self, procs: list[Process], tmp: Path) -> None:
        self.mesh = Mesh(tmp, procs)
        py = sys.executable
        for ns, args in (
            ("b", ["--host", "0.0.0.0", "--port", "8080", "--name", "catalog-b"]),
            ("b", ["--host", "0.0.0.0", "--port", "5432", "--tcp"]),
            ("c", ["--host", "0.0.0.0", "--port", "9090", "--name", "outside"]),
        ):
            procs.append(
                Process(
                    ["ip", "netns", "exec", NS[ns], py, "-m", "tests.helpers.echo_app", *args],
                    tmp / f"app-{ns}-{args[3]}.log",
                    cwd=REPO,
                )
            )
        procs.append(
            Process(
                ["ip", "netns", "exec", NS["b"], py, "-m", "tests.helpers.grpc_app",
                 "--port", str(GRPC_PORT), "--name", "greeter-b"],
                tmp / "app-b-grpc.log",
                cwd=REPO,
            )
        )  # fmt: skip
        # the server side: intercept inbound and outbound, then run its sidecar as 1337
        catalog_cfg = config_doc(
            "catalog",
            app_ports=[(8080, "http"), (5432, "tcp"), (GRPC_PORT, "grpc")],
            mode="transparent",
        )
        self.catalog = self.mesh.sidecar(
            "catalog", catalog_cfg, user=PROXY_UID, netns=NS["b"], ports=(15006, 15001, 15000),
            extra_args=["--outbound-address", "0.0.0.0"],
        )  # fmt: skip
        eps = [(ip("b", 2), 8080)]
        ups = [
            upstream("catalog", eps, port=8080),
            upstream(
                "db", [(ip("b", 2), 8080)], port=5432, protocol="tcp", identity=spiffe("catalog")
            ),
        ]
        # the tcp cluster's endpoints are B's address on the tcp service port
        ups[1][0]["endpoints"] = [{"address": ip("b", 2), "port": 5432, "zone": ""}]
        ups[1][0]["breaker"] = {"max_connections": 2}  # circuit breaking of TCP relays
        ups.append(
            upstream(
                "greeter", [(ip("b", 2), GRPC_PORT)], port=GRPC_PORT, protocol="grpc",
                identity=spiffe("catalog"),
            )
        )  # fmt: skip
        self.web = self.mesh.sidecar(
            "web", config_doc("web", upstreams=ups, mode="transparent"), user=PROXY_UID,
            netns=NS["a"], ports=(15006, 15001, 15000), extra_args=["--outbound-address", "0.0.0.0"],
        )  # fmt: skip
        for ns in ("a", "b"):
            wait_for(partial(_ready, ns), what=f"sidecar in {NS[ns]} ready")
        wait_for(
            lambda: (
                in_ns("c", "curl", "-sf", "http://127.0.0.1:9090/", check=False).returncode == 0
            ),
            what="outside app",
        )
        for ns in ("a", "b"):
            out = in_ns(
                ns,
                *gossamer_cmd("proxy", "iptables", "install", "--proxy-uid", str(PROXY_UID)),
                check=False,
            )
            assert out.returncode == 0, out.stderr
            assert "installed" in out.stdout


@pytest.fixture(scope="module")
def world(namespaces: None) -> Iterator[World]:
    tmp = Path(tempfile.mkdtemp(prefix="gossamer-netns-"))
    tmp.chmod(0o755)  # the sidecars run as uid 1337 and read their files here
    try:
        with processes() as procs:
            yield World(procs, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_http_to_a_mesh_address_is_carried_over_mtls(world: World) -> None:
    out = in_ns("a", "curl", "-s", "--max-time", "10", f"http://{ip('b', 2)}:8080/headers")
    headers = json.loads(out.stdout)
    assert headers["x-forwarded-client-cert"] == f"By={spiffe('catalog')};URI={spiffe('web')}"
    assert headers["host"] == f"{ip('b', 2)}:8080"


def test_tcp_to_a_mesh_address_keeps_half_close(world: World) -> None:
    script = (
        "import socket,sys;"
        f"s=socket.create_connection(('{ip('b', 2)}',5432),timeout=10);"
        "s.sendall(b'x'*5000);s.shutdown(socket.SHUT_WR);d=b''\n"
        "while True:\n c=s.recv(65536)\n if not c: break\n d+=c\n"
        "sys.stdout.write(repr(d[-12:])+' '+str(len(d)))"
    )
    out = in_ns("a", sys.executable, "-c", script)
    assert out.stdout == "b'xxxbye 5000\\n' 5009"


TCP_OVERFLOW = """
import socket, sys, time
target = (sys.argv[1], 5432)
held = [socket.create_connection(target, timeout=10) for _ in range(2)]
for s in held:
    s.sendall(b"x")
    assert s.recv(10) == b"x"  # both relays are up
third = socket.create_connection(target, timeout=10)
start = time.monotonic()
try:
    third.sendall(b"y")
    data = third.recv(100)
except ConnectionResetError:
    data = b""
print("third", repr(data), round(time.monotonic() - start, 3))
held[0].close()
deadline = time.monotonic() + 10
while True:  # the freed unit lets a new relay through
    s = socket.create_connection(target, timeout=10)
    try:
        s.sendall(b"z")
        if s.recv(10) == b"z":
            break
    except ConnectionResetError:
        pass
    s.close()
    assert time.monotonic() < deadline, "no relay after a connection closed"
print("after ok")
"""


def test_tcp_relays_over_max_connections_are_closed_at_once(world: World) -> None:
    out = in_ns("a", sys.executable, "-c", TCP_OVERFLOW, ip("b", 2))
    third, after = out.stdout.splitlines()
    _, data, seconds = third.split()
    assert data == "b''" and float(seconds) < 1.0, out.stdout
    assert after == "after ok"
    metrics = in_ns("a", "curl", "-s", "http://127.0.0.1:15000/metrics").stdout
    overflow = [
        line
        for line in metrics.splitlines()
        if line.startswith("gossamer_circuit_breaker_overflows_total{")
        and 'destination_service="db"' in line
        and 'limit="max_connections"' in line
    ]
    assert overflow and float(overflow[0].rsplit(" ", 1)[1]) >= 1, overflow


def test_unknown_destination_passes_through_unchanged(world: World) -> None:
    out = in_ns("a", "curl", "-s", "--max-time", "10", f"http://{ip('c', 2)}:9090/headers")
    headers = json.loads(out.stdout)
    assert "x-forwarded-client-cert" not in headers and "x-request-id" not in headers
    assert headers["Host"] == f"{ip('c', 2)}:9090"


def test_traffic_was_intercepted_and_plaintext_is_refused(world: World) -> None:
    # the sidecars saw the requests (counted as mTLS)
    metrics = in_ns("a", "curl", "-s", "http://127.0.0.1:15000/metrics").stdout
    assert (
        'destination_service="catalog"' in metrics
        and 'connection_security_policy="mutual_tls"' in metrics
    )
    assert 'destination_service="PassthroughCluster"' in metrics
    # bypassing A's sidecar (uid 1337 is not redirected) with plaintext: B captures it
    # on its inbound port, which only speaks mTLS
    out = in_ns(
        "a",
        "curl",
        "-s",
        "--max-time",
        "5",
        f"http://{ip('b', 2)}:8080/",
        user=PROXY_UID,
        check=False,
    )
    assert out.returncode != 0 and out.stdout == ""


def test_from_outside_only_the_metrics_port_answers(world: World) -> None:
    """B's metrics port is exempt from interception and serves /metrics only; B's admin
    port (127.0.0.1) is not: a connection to it from A lands on B's inbound port (mTLS)."""

    def get(port: int, path: str) -> subprocess.CompletedProcess[str]:
        url = f"http://{ip('b', 2)}:{port}{path}"
        return in_ns("a", "curl", "-s", "--max-time", "5", "-w", "\n%{http_code}", url,
                     user=PROXY_UID, check=False)  # fmt: skip

    metrics = get(15090, "/metrics")
    assert metrics.returncode == 0 and metrics.stdout.endswith("\n200"), metrics
    assert 'destination_service="catalog"' in metrics.stdout
    assert get(15090, "/config_dump").stdout.endswith("\n404")
    admin = get(15000, "/config_dump")
    assert admin.returncode != 0 and '"listeners"' not in admin.stdout, admin
    assert not admin.stdout.endswith("\n200")


def test_grpc_to_a_mesh_address_is_carried_over_h2(world: World) -> None:
    """The app dials B's gRPC port with h2c prior knowledge; A's sidecar recognises the
    preface, routes by the original destination, h2 over mTLS to B, h2c to the app."""
    out = in_ns("a", sys.executable, "-c", GRPC_CALL, f"{ip('b', 2)}:{GRPC_PORT}")
    assert out.stdout.split() == ["greeter-b:hi", "done"], out


def test_iptables_remove_restores_direct_connections(world: World) -> None:
    out = in_ns("c", *gossamer_cmd("proxy", "iptables", "remove"))
    assert "no gossamer rules" in out.stdout
    rules = in_ns("a", "iptables", "-t", "nat", "-S").stdout
    assert "GOSSAMER_OUTPUT" in rules
    in_ns("a", *gossamer_cmd("proxy", "iptables", "remove"))
    rules = in_ns("a", "iptables", "-t", "nat", "-S").stdout
    assert "GOSSAMER" not in rules
    # without interception, A's plaintext request reaches B's port, which still captures
    # inbound: the mesh on B refuses it
    out = in_ns("a", "curl", "-s", "--max-time", "5", f"http://{ip('b', 2)}:8080/", check=False)
    assert out.stdout == ""
    # and the outside app is reached directly
    direct = in_ns("a", "curl", "-s", "--max-time", "5", f"http://{ip('c', 2)}:9090/")
    assert direct.stdout == "outside\n"
