"""Several nodes joined by node gateways, as real processes in network namespaces (root).

Three nodes (tests/helpers/nodes.py: one namespace each on a bridge; from another node
only the gateway port 15443 is reachable), the control plane on the bridge address,
a `gossamer gateway` per node, and `gossamer proxy` sidecars with `--node`:

    node-1 (zone-a): web, catalog-1     node-2 (zone-a): catalog-2    node-3 (zone-b): catalog-3

catalog allows only web. Checked: web's EDS (own node 0, node-2's gateway 1, node-3's
gateway 2); traffic stays on node 1, then fails over to node 2 with zero failed requests
when catalog-1 stops; a request crosses nodes through node 2's gateway with web's SPIFFE
ID reaching catalog-2 (x-forwarded-client-cert); the gateway's metrics count it per
service and peer node; a capture between nodes holds only TLS; an identity the policy
denies gets 403 through the gateway; node-internal ports are unreachable from other
nodes; garbage, a ClientHello with an unknown SNI and a silent connection are closed and
counted while requests keep flowing; `gossamer status -o json` lists the gateways.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from gossamer.certs.ca import CertificateAuthority
from tests.docker.pcap import tcp_segments
from tests.helpers.multinode import GW_PORT, TD, World, spiffe
from tests.helpers.nodes import SimNodes
from tests.helpers.pki import make_workload
from tests.helpers.procs import processes, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.root]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("multinode")
    with SimNodes(3, open_ports=[GW_PORT]) as nodes, processes() as procs:
        w = World(tmp, procs, nodes)
        w.start_control()
        for node in (1, 2, 3):
            w.gateway(node)
        for node in (1, 2, 3):
            w.sidecar(node, "catalog", f"catalog-{node}", w.app(node, f"catalog-{node}"))
        w.sidecar(1, "web", "web", None)
        yield w


def test_locality_keeps_traffic_on_the_node_then_fails_over_without_errors(world: World) -> None:
    web = world.sidecars["web"]
    gw = {n: f"{world.nodes.address(n)}:{GW_PORT}" for n in (2, 3)}

    def shape() -> set[tuple[str, str, int, str]]:
        return {(e["node"], f"{e['address']}:{e['port']}", e["priority"], e["health"])
                for e in world.endpoints(web)}  # fmt: skip

    local = f"{world.nodes.address(1)}:{world.sidecars['catalog-1'].inbound}"
    expected = {("node-1", local, 0, "healthy"), ("node-2", gw[2], 1, "healthy"),
                ("node-3", gw[3], 2, "healthy")}  # fmt: skip
    wait_for(lambda: shape() == expected, timeout=20,
             what=f"web's catalog endpoints {expected}")  # fmt: skip

    served = Counter(world.requests(web, 30))
    assert served == Counter({(200, "catalog-1"): 30}), served

    load = world.load(web)
    try:
        time.sleep(1.0)
        stopped_at = time.monotonic()
        world.sidecars["catalog-1"].process.signal(signal.SIGTERM)
        wait_for(lambda: not world.sidecars["catalog-1"].process.alive(), timeout=20,
                 what="catalog-1 drained and stopped")  # fmt: skip
        time.sleep(2.0)
        print(f"catalog-1 gone {time.monotonic() - stopped_at:.1f} s after SIGTERM")
    finally:
        outcomes = load.stop()
    print(f"outcomes during the failover: {dict(outcomes)}")
    failed = {k: v for k, v in outcomes.items() if k[0] != 200}
    assert not failed, f"requests failed during the failover: {failed}"
    assert outcomes[(200, "catalog-2")] > 0, outcomes  # node-2: same zone, priority 1
    assert outcomes[(200, "catalog-3")] == 0, outcomes
    late = Counter(world.requests(web, 20))
    assert late == Counter({(200, "catalog-2"): 20}), late


def test_cross_node_request_carries_the_callers_identity_and_is_counted(world: World) -> None:
    world.without_local_catalog()
    web = world.sidecars["web"]
    before = world.gw_metric(2, "gossamer_gateway_connections_total",
                             service="catalog.default", peer_node="node-1")  # fmt: skip
    [(status, body)] = world.requests(web, 1, "/headers")
    assert status == 200, body
    headers = {k.lower(): v for k, v in json.loads(body).items()}
    assert f"URI={spiffe('web')}" in headers["x-forwarded-client-cert"], headers
    assert f"By={spiffe('catalog')}" in headers["x-forwarded-client-cert"], headers
    # a fresh connection (sidecars pool theirs) shows in the gateway's metrics
    for _ in range(3):
        world.requests(web, 5)
    wait_for(
        lambda: world.gw_metric(2, "gossamer_gateway_bytes_total", service="catalog.default",
                                peer_node="node-1", direction="sent") > 0,
        timeout=10, what="node-2's gateway counting bytes sent to node-1",
    )  # fmt: skip
    received = world.gw_metric(2, "gossamer_gateway_bytes_total", service="catalog.default",
                               peer_node="node-1", direction="received")  # fmt: skip
    connections = world.gw_metric(2, "gossamer_gateway_connections_total",
                                  service="catalog.default", peer_node="node-1")  # fmt: skip
    assert received > 0 and connections >= max(1, before), (received, connections)
    assert world.gw_metric(2, "gossamer_gateway_route_instances", service="catalog.default") == 1
    routes = json.loads(world.http(2, world.gw_url("/routes"))[1])
    catalog_2 = f"{world.nodes.address(2)}:{world.sidecars['catalog-2'].inbound}"
    assert routes["routes"][f"outbound_.8080_._.catalog.default.svc.{TD}"] == [catalog_2]
    assert routes["peers"][world.nodes.address(1)] == "node-1"
    status, text = world.http(2, "http://127.0.0.1:15020/metrics")  # the metrics-only port
    assert status == 200 and "gossamer_gateway_bytes_total" in text
    assert world.http(2, "http://127.0.0.1:15020/routes")[0] == 404

    out = world.status("-o", "json")
    assert out.returncode == 0, out.stderr
    gateways = {g["node"]: g for g in json.loads(out.stdout)["gateways"]}
    assert set(gateways) == {"node-1", "node-2", "node-3"}, gateways
    assert gateways["node-2"]["address"] == world.nodes.address(2)
    assert gateways["node-2"]["port"] == GW_PORT and gateways["node-2"]["healthy_instances"] == 1
    table = world.status()
    assert table.returncode == 0 and "Node gateways" in table.stdout, table.stdout + table.stderr
    assert f"{world.nodes.address(2)}:{GW_PORT}" in table.stdout, table.stdout
    # the dashboard draws them from /v1/overview
    overview = world.api("/v1/overview")
    assert sorted(g["node"] for g in overview["gateways"]) == ["node-1", "node-2", "node-3"]


def test_capture_between_nodes_holds_only_tls(world: World) -> None:
    world.without_local_catalog()
    web = world.sidecars["web"]
    pcap = world.tmp / "between-nodes.pcap"
    a1, a2 = world.nodes.address(1), world.nodes.address(2)
    dump = subprocess.Popen(
        ["tcpdump", "-i", world.nodes.bridge, "-U", "-w", str(pcap),
         f"tcp and host {a1} and host {a2}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_for(pcap.exists, timeout=10, what="tcpdump started")
        time.sleep(0.5)
        # new connections too: the sidecar pools, so restart nothing; just send enough
        results = world.requests(web, 20, "/headers")
        assert all(status == 200 for status, _ in results), results
        time.sleep(0.5)
    finally:
        dump.send_signal(signal.SIGINT)
        dump.wait(timeout=10)
    segments = tcp_segments(pcap.read_bytes())
    assert segments, "the capture saw no traffic between node 1 and node 2"
    for seg in segments:
        assert GW_PORT in (seg.sport, seg.dport), seg[:4]  # only the gateway port crosses
        assert seg.payload[0] in (20, 21, 22, 23), (seg[:4], seg.payload[:16])
        assert b"HTTP/1.1" not in seg.payload and b"catalog-2" not in seg.payload, seg[:4]


def test_denied_identity_gets_403_through_the_gateway(world: World) -> None:
    intruder = make_workload(CertificateAuthority.load(world.ca_dir), "intruder",
                             world.tmp / "intruder")  # fmt: skip
    sni = f"outbound_.8080_._.catalog.default.svc.{TD}"
    out = world.run_in(
        1, "curl", "-s", "-k", "--http1.1", "--max-time", "5", "-o", "/dev/null",
        "-w", "%{http_code}", "--cert", str(intruder.chain_file), "--key", str(intruder.key_file),
        "--resolve", f"{sni}:{GW_PORT}:{world.nodes.address(2)}", f"https://{sni}:{GW_PORT}/",
    )  # fmt: skip
    assert out.stdout == "403", (out.stdout, out.stderr)


PROBES = r"""
import socket, ssl, sys, json
host, port, inbound = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
out = {}
def closed(sock):
    sock.settimeout(5)
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, OSError):
        return True
s = socket.create_connection((host, port)); s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
out["garbage"] = closed(s)
s = socket.create_connection((host, port))
s.sendall(bytes([22, 3, 1, 0, 40, 1, 0, 0, 36]) + bytes(36))  # lengths that lie
out["malformed"] = closed(s)
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
try:
    with ctx.wrap_socket(socket.create_connection((host, port), timeout=5),
                         server_hostname="nope.example") as t:
        out["unknown_sni"] = False
except (ssl.SSLError, OSError):
    out["unknown_sni"] = True
s = socket.create_connection((host, port))
out["silent"] = closed(s)
try:
    socket.create_connection((host, inbound), timeout=2).close()
    out["internal_reachable"] = True
except OSError:
    out["internal_reachable"] = False
print(json.dumps(out))
"""


def test_bad_connections_are_closed_and_counted_while_requests_flow(world: World) -> None:
    world.without_local_catalog()
    web = world.sidecars["web"]
    before = {r: world.gw_metric(2, "gossamer_gateway_rejected_total", reason=r)
              for r in ("not_tls", "malformed", "unknown_sni", "hello_timeout")}  # fmt: skip
    load = world.load(web)
    try:
        probe = world.run_in(1, sys.executable, "-c", PROBES, world.nodes.address(2), str(GW_PORT),
                             str(world.sidecars["catalog-2"].inbound))  # fmt: skip
    finally:
        outcomes = load.stop()
    assert probe.returncode == 0, probe.stderr
    seen = json.loads(probe.stdout)
    assert seen == {"garbage": True, "malformed": True, "unknown_sni": True, "silent": True,
                    "internal_reachable": False}, seen  # fmt: skip
    after = {r: world.gw_metric(2, "gossamer_gateway_rejected_total", reason=r) for r in before}
    assert {r: after[r] - before[r] for r in before} == {
        "not_tls": 1, "malformed": 1, "unknown_sni": 1, "hello_timeout": 1}, (before, after)  # fmt: skip
    assert outcomes and set(outcomes) == {(200, "catalog-2")}, outcomes


def test_a_node_whose_gateway_stops_is_served_direct_again(world: World) -> None:
    """Deregistration on SIGTERM; a node without a gateway keeps direct endpoints (which
    this test's firewall makes unreachable: that is the operator's topology to choose)."""
    web = world.sidecars["web"]
    gateway = world.gateways[3]
    gateway.signal(signal.SIGTERM)
    wait_for(lambda: not gateway.alive(), timeout=20, what="node-3's gateway stopped")
    direct = f"{world.nodes.address(3)}:{world.sidecars['catalog-3'].inbound}"

    def node_3() -> list[str]:
        return [
            f"{e['address']}:{e['port']}" for e in world.endpoints(web) if e["node"] == "node-3"
        ]

    wait_for(lambda: node_3() == [direct], timeout=20, what=f"node-3's catalog at {direct}")
