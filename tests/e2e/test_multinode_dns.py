"""Transparent mode reaches a service that lives only on another node by its name (root).

    node-1: app (curl, getaddrinfo), web's sidecar (uid 1337, --dns-port 15053),
            "the host's resolver" 127.0.0.2:53 (tests/helpers/dns_upstream.py)
    node-2: gateway :15443, catalog-2 (app + sidecar)

Node 1's /etc/resolv.conf (through /etc/netns/NAME/) names 127.0.0.2, as a container's
names Docker's 127.0.0.11, and `gossamer proxy iptables install --dns-port 15053`
redirects the app's DNS to its sidecar. Checked, through the system resolver as a real
app does: `catalog` (and its qualified names) resolve to the sidecar's virtual IP, over
UDP and TCP, without reaching the upstream; an HTTP call to it crosses to node 2's
gateway over mTLS and catalog sees web's identity; a name outside the mesh is forwarded
and answered by the upstream (over TCP too), a name nobody knows is NXDOMAIN; malformed
packets get FORMERR or nothing and the server keeps answering; DNS to a resolver
resolv.conf does not name is not redirected (as Docker's DNS sends its own); with the
rules removed,
`catalog` is unknown again (the redirect was the path). Everything is removed afterwards.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.multinode import GW_PORT, REPO, World, spiffe
from tests.helpers.nodes import SimNodes
from tests.helpers.procs import Process, gossamer_cmd, processes, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.root]

PROXY_UID = 1337
DNS_PORT = 15053
UPSTREAM = "127.0.0.2"
OUTSIDE = ("outside.test", "192.0.2.7")
OTHER = "127.0.0.3"  # a resolver the app's resolv.conf does not name
DIRECT = ("direct.test", "192.0.2.8")

# a lookup through the system resolver (glibc: /etc/hosts, then resolv.conf's servers)
RESOLVE = """
import socket, sys
try:
    infos = socket.getaddrinfo(sys.argv[1], 80, int(sys.argv[2]), socket.SOCK_STREAM)
    print(sorted({i[4][0] for i in infos}))
except socket.gaierror as exc:
    print("gaierror", exc.errno)
"""

# raw DNS to the resolv.conf server (redirected to the sidecar): TCP, or UDP garbage
RAW = """
import socket, struct, sys
from gossamer.proxy.transport import dns_wire as wire
kind, arg, up = sys.argv[1:4]
if kind == "tcp":
    s = socket.create_connection((up, 53), timeout=5)
    q = wire.build_query(arg, ident=77)
    s.sendall(struct.pack("!H", len(q)) + q)
    n, = struct.unpack("!H", s.recv(2, socket.MSG_WAITALL))
    r = wire.parse_response(s.recv(n, socket.MSG_WAITALL))
    print(r.id, r.rcode, [socket.inet_ntoa(a) for a in r.addresses])
elif kind == "udpq":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5.0)
    s.sendto(wire.build_query(arg, ident=78), (up, 53))
    r = wire.parse_response(s.recv(4096))
    print(r.id, r.rcode, [socket.inet_ntoa(a) for a in r.addresses])
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1.0)
    s.sendto(bytes.fromhex(arg), (up, 53))
    try:
        print(s.recv(4096).hex())
    except TimeoutError:
        print("silence")
"""


def _listening(proc: Process) -> bool:
    return not proc.alive() or "listening" in proc.output()


class DnsWorld(World):
    def __init__(self, tmp: Path, procs: list[Process], nodes: SimNodes) -> None:
        super().__init__(tmp, procs, nodes)
        self.upstream: Process | None = None
        self.web: Process | None = None

    def py(self, code: str, *args: str, timeout: float = 30) -> str:
        out = self.run_in(1, sys.executable, "-c", code, *args, timeout=timeout)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    def resolve(self, name: str, family: str = "AF_INET") -> Any:
        import socket

        text = self.py(RESOLVE, name, str(int(getattr(socket, family))))
        return text if text.startswith("gaierror") else json.loads(text.replace("'", '"'))

    def raw(self, kind: str, arg: str, server: str = UPSTREAM) -> str:
        return self.py(RAW, kind, arg, server)

    def upstream_saw(self) -> list[str]:
        assert self.upstream is not None
        return [
            line for line in self.upstream.output().splitlines() if line[:4] in ("udp ", "tcp ")
        ]

    def dns_status(self) -> dict[str, Any]:
        code, body = self.http(1, "http://127.0.0.1:15000/config_dump?resources=0")
        assert code == 200, body
        status: dict[str, Any] = json.loads(body)["dns"]
        return status

    def start_upstreams(self) -> None:
        """The resolver of resolv.conf, and another one (as the host's resolvers that
        Docker's DNS queries from the namespace), which must be reached directly."""
        for name, address, answer in (("dns-upstream", UPSTREAM, OUTSIDE),
                                      ("dns-other", OTHER, DIRECT)):  # fmt: skip
            up = self.spawn(1, name, [sys.executable, "-m", "tests.helpers.dns_upstream",
                                      "--listen", address, "--answer", "=".join(answer)])  # fmt: skip
            wait_for(partial(_listening, up), what=name)
            assert up.alive(), up.output()
            if name == "dns-upstream":
                self.upstream = up

    def start_web(self) -> None:
        """web's sidecar as the proxy UID (its own queries are not redirected), default
        ports (alone in node 1), its DNS on 15053; then node 1's interception."""
        args = gossamer_cmd(
            "proxy", "--service", "web", "--node", "node-1", "--zone", "zone-a",
            "--control", f"{self.nodes.host}:{self.ports['xds']}",
            "--bootstrap", f"{self.nodes.host}:{self.ports['bootstrap']}",
            "--instance-id", "web", "--dns-port", str(DNS_PORT),
        )  # fmt: skip
        user = ["setpriv", f"--reuid={PROXY_UID}", f"--regid={PROXY_UID}", "--clear-groups"]
        token = self.token_file("web").read_text()
        self.web = Process(self.nodes.exec(1, [*user, *args]), self.tmp / "sidecar-web.log",
                           env={"GOSSAMER_LOG_FORMAT": "json", "GOSSAMER_TOKEN": token},
                           cwd=REPO)  # fmt: skip
        self.procs.append(self.web)
        web = self.web
        wait_for(lambda: not web.alive() or self.http(1, "http://127.0.0.1:15000/ready")[0] == 200,
                 timeout=30, what="web's sidecar ready")  # fmt: skip
        assert web.alive(), web.output()
        out = self.run_in(1, *gossamer_cmd(
            "proxy", "iptables", "install", "--proxy-uid", str(PROXY_UID), "--no-inbound",
            "--dns-port", str(DNS_PORT),
        ))  # fmt: skip
        assert out.returncode == 0 and "installed" in out.stdout, out.stderr


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsWorld]:
    tmp = tmp_path_factory.mktemp("multinode-dns")
    tmp.chmod(0o755)  # web's sidecar runs as uid 1337
    with SimNodes(2, open_ports=[GW_PORT]) as nodes:
        # `ip netns exec` mounts /etc/netns/NAME/resolv.conf over /etc/resolv.conf
        etc = Path("/etc/netns") / nodes.netns(1)
        etc.mkdir(parents=True)
        try:
            (etc / "resolv.conf").write_text(f"nameserver {UPSTREAM}\noptions timeout:2\n")
            # a host's default route: connecting to a VIP needs a route before
            # iptables' nat OUTPUT rewrites the destination
            out = subprocess.run(["ip", "-n", nodes.netns(1), "route", "add", "default",
                                  "via", nodes.host], capture_output=True, text=True)  # fmt: skip
            assert out.returncode == 0, out.stderr
            with processes() as procs:
                w = DnsWorld(tmp, procs, nodes)
                w.start_control()
                w.gateway(2)
                w.sidecar(2, "catalog", "catalog-2", w.app(2, "catalog-2"))
                w.start_upstreams()
                w.start_web()
                wait_for(lambda: "catalog" in w.dns_status()["answers"], timeout=20,
                         what="catalog in web's DNS answers")  # fmt: skip
                yield w
        finally:
            shutil.rmtree(etc, ignore_errors=True)


def test_a_service_of_another_node_resolves_to_its_vip_and_answers(world: DnsWorld) -> None:
    status = world.dns_status()
    vip = status["answers"]["catalog"]
    assert ipaddress.IPv4Address(vip) in ipaddress.IPv4Network("240.240.0.0/16")
    assert status["upstreams"] == [f"{UPSTREAM}:53"]
    for name in ("catalog", "catalog.default", "catalog.default.svc.gossamer.local"):
        assert world.resolve(name) == [vip], name
        assert world.resolve(name, "AF_UNSPEC") == [vip], name  # AAAA: NODATA, not a failure
    assert world.resolve("catalog", "AF_INET6") == "gaierror -5"  # EAI_NODATA
    assert world.raw("tcp", "catalog.default") == f"77 0 ['{vip}']"  # DNS over TCP too
    asked = {line.split()[1] for line in world.upstream_saw()}
    assert not asked & {"catalog", "catalog.default", "catalog.default.svc.gossamer.local"}, asked

    # the app calls it by name; the sidecar takes VIP:8080 to node 2's gateway (mTLS)
    code, body = world.http(1, "http://catalog:8080/")
    assert (code, body.strip()) == (200, "catalog-2")
    code, body = world.http(1, "http://catalog.default:8080/headers")
    assert code == 200, body
    xfcc = {k.lower(): v for k, v in json.loads(body).items()}["x-forwarded-client-cert"]
    assert f"URI={spiffe('web')}" in xfcc and f"By={spiffe('catalog')}" in xfcc, xfcc
    # the VIP is not a real address: without the sidecar nothing would answer there
    assert world.dns_status()["queries"]["answered"] >= 5


def test_other_names_go_to_the_original_resolver_unchanged(world: DnsWorld) -> None:
    name, address = OUTSIDE
    assert world.resolve(name) == [address]
    assert f"udp {name} 1" in world.upstream_saw()
    assert world.raw("tcp", name) == f"77 0 ['{address}']"
    assert f"tcp {name} 1" in world.upstream_saw()
    assert world.resolve("nowhere.test") == "gaierror -2"  # NXDOMAIN from the upstream
    # DNS to a server resolv.conf does not name is not redirected (Docker's embedded DNS
    # asks the host's resolvers from the namespace: through the sidecar it would loop)
    assert world.raw("udpq", DIRECT[0], OTHER) == f"78 0 ['{DIRECT[1]}']"
    assert world.raw("udpq", "catalog", OTHER) == "78 3 []"  # not the sidecar's VIP
    assert world.dns_status()["queries"]["forwarded"] >= 3


def test_malformed_packets_do_not_disturb_the_server(world: DnsWorld) -> None:
    before = world.dns_status()["queries"]
    assert world.raw("udp", "00") == "silence"  # shorter than a header: dropped
    truncated = "abcd01000001000000000000" + "3f" + "61" * 5  # a label running off the end
    reply = world.raw("udp", truncated)
    assert reply[:4] == "abcd" and int(reply[4:8], 16) & 0x800F == 0x8001, reply  # FORMERR
    assert world.raw("udp", "ff" * 700) == "silence"  # QR set, a "response": never answered
    after = world.dns_status()["queries"]
    assert after["dropped"] >= before["dropped"] + 1
    assert after["formerr"] >= before["formerr"] + 1
    assert not [line for line in world.upstream_saw() if "malformed" in line]
    assert world.web is not None and world.web.alive()
    assert world.resolve("catalog") == [world.dns_status()["answers"]["catalog"]]


def test_without_the_redirect_the_name_is_unknown_again(world: DnsWorld) -> None:
    out = world.run_in(1, *gossamer_cmd("proxy", "iptables", "remove"))
    assert out.returncode == 0, out.stderr
    rules = world.run_in(1, "iptables", "-t", "nat", "-S").stdout
    assert "GOSSAMER_DNS" not in rules, rules
    assert world.resolve("catalog") == "gaierror -2"  # the upstream does not know it
    assert "udp catalog 1" in world.upstream_saw()
    assert world.resolve(OUTSIDE[0]) == [OUTSIDE[1]]
