"""Connection floods against a real sidecar's ports (issue 17, finding 4).

An attacker opens thousands of TCP connections to the inbound port and sends nothing
(or trickles a TLS handshake). Before the limits the sidecar kept every one, with its
TLS state built at accept (about 45 KB each: 3,000 connections took 130 MB), until the
process ran out of file descriptors. Now each listener has a connection cap (lowered
here with the sidecar's flags), an idle connection costs about 3 KB until it sends a
byte, a connection still in its handshake is displaced by a newcomer when the inbound
port is full (so a real peer still gets in), and the handshake must finish within
`--handshake-timeout` of the accept whatever the client trickles.
"""

from __future__ import annotations

import resource
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.mesh import Mesh, Sidecar, config_doc
from tests.helpers.net import idle_connections, seconds_until_cut_off
from tests.helpers.pki import TRUST_DOMAIN, Workload
from tests.helpers.procs import processes, wait_for

pytestmark = pytest.mark.e2e

APP_PORT = 8080
SNI = f"outbound_.{APP_PORT}_._.catalog.default.svc.{TRUST_DOMAIN}"
INBOUND_CAP = 200
OUTBOUND_CAP = 50
ADMIN_CAP = 16
FLOOD = 3000  # idle connections to the inbound port, 15 times its cap
RSS_GROWTH_CEILING_MB = 25.0  # before: about 130 MB for 3,000 idle connections
LATENCY_CEILING = 3.0  # seconds for a real peer's connection, handshake and request
HANDSHAKE_TIMEOUT = 2.0


class World:
    def __init__(self, mesh: Mesh) -> None:
        app = mesh.app("catalog-0")
        doc = config_doc("catalog", app_ports=[(APP_PORT, "http", app)])
        self.catalog: Sidecar = mesh.sidecar(
            "catalog",
            doc,
            extra_args=[
                "--max-inbound-connections", str(INBOUND_CAP),
                "--max-outbound-connections", str(OUTBOUND_CAP),
                "--max-admin-connections", str(ADMIN_CAP),
            ],
        )  # fmt: skip
        self.quick: Sidecar = mesh.sidecar(
            "catalog", doc, extra_args=["--handshake-timeout", str(HANDSHAKE_TIMEOUT)]
        )
        self.peer = mesh.workload("web")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2 * FLOOD:  # this process holds the attacker's side of every connection
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4 * FLOOD), hard))
    try:
        with processes() as procs:
            yield World(Mesh(tmp_path_factory.mktemp("connlimits"), procs))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def open_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def mtls_get(sidecar: Sidecar, peer: Workload, timeout: float = 5.0) -> tuple[int, float]:
    """A real peer: connect, mTLS handshake, one HTTP/1.1 GET; (status, seconds)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False  # the server's identity is a SPIFFE ID, not a host name
    ctx.load_verify_locations(str(peer.bundle_file))
    ctx.load_cert_chain(str(peer.chain_file), str(peer.key_file))
    start = time.monotonic()
    with (
        socket.create_connection(("127.0.0.1", sidecar.inbound), timeout=timeout) as raw,
        ctx.wrap_socket(raw, server_hostname=SNI) as tls,
    ):
        tls.sendall(b"GET / HTTP/1.1\r\nHost: catalog:8080\r\nConnection: close\r\n\r\n")
        head = tls.recv(4096)
    return int(head.split()[1]), time.monotonic() - start


def still_open(socks: list[socket.socket]) -> int:
    """How many of `socks` the server has not closed (no EOF, no reset)."""
    n = 0
    for s in socks:
        try:
            if s.recv(1, socket.MSG_PEEK):
                n += 1
        except BlockingIOError:
            n += 1
        except OSError:
            pass
    return n


def test_idle_flood_on_inbound_is_capped_and_a_real_peer_gets_in(world: World) -> None:
    sc = world.catalog
    pid = sc.process.pid
    assert mtls_get(sc, world.peer)[0] == 200
    baseline = rss_mb(pid)
    with idle_connections(sc.inbound, FLOOD) as socks:
        wait_for(
            lambda: sc.metric("gossamer_downstream_connections_total", listener="inbound") >= FLOOD,
            what="the sidecar to accept the flood",
        )
        time.sleep(0.5)
        grown = rss_mb(pid) - baseline
        fds = open_fds(pid)
        status, seconds = mtls_get(sc, world.peer)  # displaces the oldest idle one
        held = still_open(socks)
        overflow = sc.metric("gossamer_downstream_connections_overflow_total", listener="inbound")
    print(f"{FLOOD} idle connections: RSS +{grown:.1f} MB, {fds} fds, "
          f"{held} held, overflow {overflow:g}, real peer {seconds * 1000:.0f} ms")  # fmt: skip
    assert grown < RSS_GROWTH_CEILING_MB
    assert held <= INBOUND_CAP
    assert fds < INBOUND_CAP + 100
    assert overflow >= FLOOD - INBOUND_CAP
    assert status == 200
    assert seconds < LATENCY_CEILING
    assert "connection limit reached" in sc.process.output()


def test_outbound_cap_closes_newcomers_and_frees_slots(world: World) -> None:
    sc = world.catalog
    with idle_connections(sc.outbound, OUTBOUND_CAP + 30) as socks:
        wait_for(
            lambda: (
                sc.metric("gossamer_downstream_connections_overflow_total", listener="outbound")
                >= 30
            ),
            what="30 outbound overflows",
        )
        assert still_open(socks) == OUTBOUND_CAP
    # the app's slots are back (within a recount, 0.1 s) once its connections close

    def served() -> bool:
        with socket.create_connection(("127.0.0.1", sc.outbound), timeout=5) as s:
            s.sendall(b"GET http://nowhere.invalid/ HTTP/1.1\r\nHost: nowhere.invalid\r\n\r\n")
            return s.recv(4096).startswith(b"HTTP/1.1 ")

    wait_for(served, timeout=2.0, what="a new outbound connection to be served")


def test_admin_flood_does_not_lock_out_probes(world: World) -> None:
    sc = world.catalog
    with idle_connections(sc.admin, ADMIN_CAP * 3) as socks:
        # each scrape over the cap displaces the oldest idle connection: it gets in
        wait_for(
            lambda: (
                sc.metric("gossamer_downstream_connections_overflow_total", listener="admin")
                >= ADMIN_CAP * 2
            ),
            what="the admin port to be full",
        )
        assert sc.admin_get("/ready")[0] == 200
        assert still_open(socks) < ADMIN_CAP


def test_handshake_deadline_counts_from_accept_not_from_the_last_byte(world: World) -> None:
    sc = world.quick
    # a handshake record of 512 bytes, begun, then one more byte every 0.2 s: never a
    # complete record
    closed_after = seconds_until_cut_off(sc.inbound, b"\x16\x03\x01\x02\x00\x01", b"\x00")
    assert closed_after is not None, "the trickling client was never cut off"
    assert HANDSHAKE_TIMEOUT - 0.3 <= closed_after <= HANDSHAKE_TIMEOUT + 1.5
