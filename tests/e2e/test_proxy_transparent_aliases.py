"""Transparent mode and the addresses an endpoint only claims (aliases), in network
namespaces this test creates (needs root). Issue 17 finding 10 follow-up.

    netns A (client: web sidecar, iptables)
      -> B  catalog: two addresses, .2 (verified) and .3 (its alias): sidecar + app :8080
      -> C  a plain HTTP server :9090 and a plain TCP server :5432 (no mesh)
      -> D  evil: sidecar + apps :8080, :9090, :5432 (tcp); its endpoints claim, as
            aliases, catalog's verified address and C's address

web's configuration lists evil's clusters first, so before the fix evil won every
address it claimed (first claim, in cluster order): web's app dialling catalog or the
plain servers reached evil's app over mTLS (evil's identity checks out). Now a verified
address names its cluster whatever the order, and an address only claimed is pinned:
web connects to that very address and expects the claimant's identity, which the real
owner there cannot present, so the connection fails and evil's apps see nothing. A
legitimate alias (catalog's .3, the multi-network case of issue 16) still works.
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
from typing import Any

import pytest

from tests.helpers.mesh import REPO, Mesh, config_doc, spiffe, upstream
from tests.helpers.procs import Process, gossamer_cmd, processes, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.root]

PROXY_UID = 1337
TAG = f"h{os.getpid() % 100000}"
NS = {name: f"{TAG}{name}" for name in ("a", "b", "c", "d")}
SUBNET = (os.getpid() % 200) + 20
SECOND = {"b": 79, "c": 80, "d": 81}
ASKED: dict[int, int] = {}  # /hits questions asked of evil's apps, by port
TCP_SEND = """
import socket, sys
s = socket.create_connection((sys.argv[1], 5432), timeout=10)
data = b""
try:
    s.sendall(b"x" * 10)
    s.shutdown(socket.SHUT_WR)
    while chunk := s.recv(65536):
        data += chunk
except OSError as exc:
    print("error", type(exc).__name__)
print("received", repr(data))
"""


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, capture_output=True, text=True, timeout=30)
    if check:
        assert result.returncode == 0, (args, result.stderr)
    return result


def ip(ns: str, n: int) -> str:
    return f"10.{SECOND[ns]}.{SUBNET}.{n}"


def in_ns(ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = sh("ip", "netns", "exec", NS[ns], *args, check=False)
    if check:
        assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result


def curl(ns: str, url: str) -> tuple[int, str, dict[str, str]]:
    """(status, body, headers) of a GET from `ns` (status 0: no answer)."""
    out = in_ns(ns, "curl", "-s", "-i", "--max-time", "10", url, check=False).stdout
    if not out:
        return 0, "", {}
    head, _, body = out.replace("\r\n", "\n").partition("\n\n")
    lines = head.splitlines()
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), body, headers


@pytest.fixture(scope="module")
def namespaces() -> Iterator[None]:
    assert os.geteuid() == 0, "transparent mode tests create network namespaces: run as root"
    try:
        for ns in NS.values():
            sh("ip", "netns", "add", ns)
        for peer in ("b", "c", "d"):
            left, right = f"{TAG}a{peer}", f"{TAG}{peer}a"
            sh("ip", "link", "add", left, "type", "veth", "peer", "name", right)
            sh("ip", "link", "set", left, "netns", NS["a"])
            sh("ip", "link", "set", right, "netns", NS[peer])
            sh("ip", "-n", NS["a"], "addr", "add", f"{ip(peer, 1)}/24", "dev", left)
            sh("ip", "-n", NS[peer], "addr", "add", f"{ip(peer, 2)}/24", "dev", right)
            sh("ip", "-n", NS["a"], "link", "set", left, "up")
            sh("ip", "-n", NS[peer], "link", "set", right, "up")
        # catalog's instance has a second address (its alias)
        sh("ip", "-n", NS["b"], "addr", "add", f"{ip('b', 3)}/24", "dev", f"{TAG}ba")
        for ns in NS.values():
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield
    finally:
        for ns in NS.values():
            sh("ip", "netns", "del", ns, check=False)


def _ready(ns: str) -> bool:
    return in_ns(ns, "curl", "-sf", "http://127.0.0.1:15000/ready", check=False).returncode == 0


def _answers(ns: str, url: str) -> bool:
    return curl(ns, url)[0] == 200


def claiming(
    up: tuple[dict[str, Any], dict[str, Any]], aliases: list[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The upstream with its one endpoint claiming `aliases`."""
    up[0]["endpoints"][0]["aliases"] = aliases
    return up


class World:
    def __init__(self, procs: list[Process], tmp: Path) -> None:
        self.mesh = Mesh(tmp, procs)
        py = sys.executable
        apps = [
            ("b", "8080", "catalog-b", False),
            ("c", "9090", "outside", False),
            ("c", "5432", "outside-db", True),
            ("d", "8080", "evil", False),
            ("d", "9090", "evil-9090", False),
            ("d", "5432", "evil-db", True),
        ]
        for ns, port, name, tcp in apps:
            args = ["--host", "0.0.0.0", "--port", port, "--name", name, *(["--tcp"] * tcp)]
            procs.append(
                Process(
                    ["ip", "netns", "exec", NS[ns], py, "-m", "tests.helpers.echo_app", *args],
                    tmp / f"app-{ns}-{port}.log",
                    cwd=REPO,
                )
            )
        sidecar = partial(
            self.mesh.sidecar, user=PROXY_UID, ports=(15006, 15001, 15000),
            extra_args=["--outbound-address", "0.0.0.0"],
        )  # fmt: skip
        sidecar("catalog", config_doc("catalog", app_ports=[(8080, "http")], mode="transparent"),
                netns=NS["b"])  # fmt: skip
        evil_ports = [(8080, "http"), (9090, "http"), (5432, "tcp")]
        sidecar("evil", config_doc("evil", app_ports=evil_ports, mode="transparent"),
                netns=NS["d"])  # fmt: skip
        evil = spiffe("evil")
        ups = [  # evil's clusters first: before the fix the first claim won
            claiming(upstream("evil", [(ip("d", 2), 8080)], port=8080), [ip("b", 2)]),
            claiming(
                upstream("evilweb", [(ip("d", 2), 9090)], port=9090, identity=evil),
                [ip("c", 2), ip("b", 2)],
            ),
            claiming(
                upstream("evildb", [(ip("d", 2), 5432)], port=5432, protocol="tcp", identity=evil),
                [ip("c", 2)],
            ),
            claiming(upstream("catalog", [(ip("b", 2), 8080)], port=8080), [ip("b", 3)]),
        ]
        sidecar("web", config_doc("web", upstreams=ups, mode="transparent"), netns=NS["a"])
        for ns in ("a", "b", "d"):
            wait_for(partial(_ready, ns), what=f"sidecar in {NS[ns]} ready")
        for where, url in (("c", ":9090"), ("d", ":8080"), ("d", ":9090")):
            health = f"http://127.0.0.1{url}/healthz"
            wait_for(partial(_answers, where, health), what=f"app on {url} in {NS[where]}")
        for ns in ("a", "b", "d"):
            out = in_ns(
                ns,
                *gossamer_cmd("proxy", "iptables", "install", "--proxy-uid", str(PROXY_UID)),
                check=False,
            )
            assert out.returncode == 0, out.stderr


@pytest.fixture(scope="module")
def world(namespaces: None) -> Iterator[World]:
    tmp = Path(tempfile.mkdtemp(prefix="gossamer-netns-"))
    tmp.chmod(0o755)  # the sidecars run as uid 1337 and read their files here
    try:
        with processes() as procs:
            yield World(procs, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def evil_hits(port: int) -> int:
    """Requests evil's app on `port` served, not counting these questions (each counts
    itself; over loopback, which is not intercepted)."""
    status, body, _ = curl("d", f"http://127.0.0.1:{port}/hits")
    assert status == 200, body
    ASKED[port] = asked = ASKED.get(port, 0) + 1
    return int(body) - asked


def test_a_legitimate_alias_still_reaches_its_instance(world: World) -> None:
    """Catalog's second address (the issue-16 multi-network case): pinned to it, mTLS
    with catalog's identity, answered by catalog's app."""
    status, body, _ = curl("a", f"http://{ip('b', 3)}:8080/headers")
    assert status == 200, body
    assert json.loads(body)["x-forwarded-client-cert"] == (
        f"By={spiffe('catalog')};URI={spiffe('web')}"
    )
    assert curl("a", f"http://{ip('b', 3)}:8080/")[1] == "catalog-b\n"


def test_a_verified_address_is_not_taken_by_a_claim(world: World) -> None:
    before = evil_hits(8080)
    status, body, _ = curl("a", f"http://{ip('b', 2)}:8080/")
    assert (status, body) == (200, "catalog-b\n")
    assert evil_hits(8080) == before


def test_a_claimed_plain_server_is_not_hijacked(world: World) -> None:
    """C's HTTP server, claimed by evil: web dials it with TLS expecting evil's
    identity; the handshake fails (503), evil's app sees nothing."""
    before = evil_hits(9090)
    status, body, headers = curl("a", f"http://{ip('c', 2)}:9090/")
    assert status in (502, 503) and "evil-9090" not in body, (status, body)
    assert headers.get("x-gossamer-error") == "connect-failure", headers
    assert evil_hits(9090) == before


def test_a_claimed_instance_address_on_another_port_is_not_hijacked(world: World) -> None:
    """Catalog's verified address on a port only evil's cluster has: pinned to catalog's
    address, whose sidecar presents catalog's identity, not evil's."""
    before = evil_hits(9090)
    status, body, headers = curl("a", f"http://{ip('b', 2)}:9090/")
    assert status == 502 and "evil-9090" not in body, (status, body)
    assert headers.get("x-gossamer-error") == "identity-mismatch", headers
    assert evil_hits(9090) == before


def test_a_claimed_database_address_is_not_relayed_to_the_claimant(world: World) -> None:
    """A TCP destination (a database outside the mesh) claimed by evil: the relay
    goes to that address over mTLS, which fails; evil's TCP app is never reached."""
    out = in_ns("a", sys.executable, "-c", TCP_SEND, ip("c", 2))
    assert out.stdout.splitlines()[-1] == "received b''", out.stdout
    metrics = in_ns("d", "curl", "-s", "http://127.0.0.1:15000/metrics").stdout
    opened = [
        line
        for line in metrics.splitlines()
        if line.startswith("gossamer_tcp_connections_opened_total{")
        and 'source_service="web"' in line
    ]
    assert not opened, opened
