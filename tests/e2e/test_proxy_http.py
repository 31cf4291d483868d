"""HTTP/1.1 and TCP through two real sidecars: bad input over raw sockets, chunked
bodies, 100-continue, upgrades, 200 MB streamed both ways with bounded memory, TCP with
half-close, and TCP authorization."""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.mesh import Mesh, Sidecar, config_doc, spiffe, upstream
from tests.helpers.procs import processes

pytestmark = pytest.mark.e2e

HTTP_PORT = 8080
TCP_PORT = 5432
BIG = 200 * 1024 * 1024


class World:
    def __init__(self, mesh: Mesh) -> None:
        self.app = mesh.app("catalog-0")
        self.tcp_app = mesh.app("db", tcp=True)
        self.catalog = mesh.sidecar(
            "catalog",
            config_doc(
                "catalog",
                app_ports=[(HTTP_PORT, "http", self.app), (TCP_PORT, "tcp", self.tcp_app)],
                allowed=[spiffe("web")],
            ),
        )
        eps = [("127.0.0.1", self.catalog.inbound)]
        ups = [
            upstream("catalog", eps, port=HTTP_PORT),
            upstream("db", eps, port=TCP_PORT, protocol="tcp", identity=spiffe("catalog")),
        ]
        self.web = mesh.sidecar(
            "web", config_doc("web", upstreams=ups), extra_args=["--header-timeout", "1"]
        )
        self.gateway = mesh.sidecar("gateway", config_doc("gateway", upstreams=ups))

    def raw(self) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", self.web.outbound), timeout=10)
        return s


def read_all(s: socket.socket) -> bytes:
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    return data


def read_until(s: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    with processes() as procs:
        yield World(Mesh(tmp_path_factory.mktemp("http"), procs))


def good_request(world: World, conn: http.client.HTTPConnection) -> None:
    conn.request("GET", "/", headers={"Host": f"catalog:{HTTP_PORT}"})
    resp = conn.getresponse()
    assert resp.status == 200 and resp.read() == b"catalog-0\n"


def test_bad_input_gets_errors_without_disturbing_other_connections(world: World) -> None:
    keeper = http.client.HTTPConnection("127.0.0.1", world.web.outbound, timeout=10)
    good_request(world, keeper)
    cases = [
        (b"THIS IS NOT HTTP\r\n\r\n", b"HTTP/1.1 400", b"bad-request"),
        (b"GET / HTTP/1.1\r\nHost: catalog\r\nContent-Length: abc\r\n\r\n", b"HTTP/1.1 400", b"bad-request"),
        (b"GET / HTTP/1.1\r\nHost: catalog\r\nX-Huge: " + b"h" * 100_000 + b"\r\n\r\n", b"HTTP/1.1 431", b"headers-too-large"),
        (b"GET /" + b"u" * 20_000 + b" HTTP/1.1\r\nHost: catalog\r\n\r\n", b"HTTP/1.1 414", b"uri-too-long"),
    ]  # fmt: skip
    for payload, status, code in cases:
        s = world.raw()
        s.sendall(payload)
        out = read_all(s)
        s.close()
        assert out.startswith(status), out[:200]
        assert b"x-gossamer-error: " + code in out
        good_request(world, keeper)  # the other connection is unaffected
    # a slow client: half a head, then nothing: 408 after the header timeout
    s = world.raw()
    s.sendall(b"GET / HTTP/1.1\r\nHost: cata")
    start = time.monotonic()
    out = read_all(s)
    s.close()
    assert out.startswith(b"HTTP/1.1 408") and 0.5 < time.monotonic() - start < 5
    good_request(world, keeper)
    # many slow clients at once do not block a normal one
    slow = [world.raw() for _ in range(50)]
    for s in slow:
        s.sendall(b"GET / HTTP/1.1\r\n")
    fresh = http.client.HTTPConnection("127.0.0.1", world.web.outbound, timeout=10)
    good_request(world, fresh)
    for s in slow:
        s.close()
    assert world.web.process.alive()
    keeper.close()
    fresh.close()


def test_chunked_bodies_both_directions(world: World) -> None:
    s = world.raw()
    body = (
        b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (b"hello ", b"chunked ", b"world"))
        + b"0\r\n\r\n"
    )
    s.sendall(
        f"POST /echo HTTP/1.1\r\nHost: catalog:{HTTP_PORT}\r\nTransfer-Encoding: chunked\r\n"
        "Connection: close\r\n\r\n".encode()
        + body
    )
    out = read_all(s)
    s.close()
    assert out.startswith(b"HTTP/1.1 200") and out.endswith(b"hello chunked world")
    # a response of unknown length arrives chunked
    s = world.raw()
    s.sendall(
        f"GET /big/100000 HTTP/1.1\r\nHost: catalog:{HTTP_PORT}\r\nConnection: close\r\n\r\n".encode()
    )
    out = read_all(s)
    s.close()
    head, _, rest = out.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head
    assert rest.endswith(b"0\r\n\r\n")
    conn = http.client.HTTPConnection("127.0.0.1", world.web.outbound, timeout=10)
    conn.request("GET", "/big/100000", headers={"Host": f"catalog:{HTTP_PORT}"})
    assert len(conn.getresponse().read()) == 100000
    conn.close()


def test_expect_100_continue(world: World) -> None:
    s = world.raw()
    s.sendall(
        f"POST /count HTTP/1.1\r\nHost: catalog:{HTTP_PORT}\r\nContent-Length: 5\r\n"
        "Expect: 100-continue\r\n\r\n".encode()
    )
    interim = read_until(s, b"\r\n\r\n")
    assert interim.startswith(b"HTTP/1.1 100 Continue"), interim  # from the app, relayed twice
    s.sendall(b"hello")
    final = read_until(s, hashlib.sha256(b"hello").hexdigest().encode() + b"\n")
    assert (
        b"HTTP/1.1 200" in final and b"5 " + hashlib.sha256(b"hello").hexdigest().encode() in final
    )
    s.close()
    # the app refuses: 417 arrives without the body ever being sent
    s = world.raw()
    s.sendall(
        f"POST /expect-reject HTTP/1.1\r\nHost: catalog:{HTTP_PORT}\r\nContent-Length: 1000000\r\n"
        "Expect: 100-continue\r\n\r\n".encode()
    )
    out = read_all(s)
    s.close()
    assert out.startswith(b"HTTP/1.1 417") and b"connection: close" in out
    # and curl, which waits for the 100 before sending, succeeds
    data = Path("/etc/services").read_bytes()
    curl = subprocess.run(
        ["curl", "-s", "-x", f"http://127.0.0.1:{world.web.outbound}", "-H", "Expect: 100-continue",
         "--data-binary", "@/etc/services", f"http://catalog:{HTTP_PORT}/count"],
        capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    assert curl.stdout.split() == [str(len(data)), hashlib.sha256(data).hexdigest()]


def test_upgrade_passes_raw_bytes_after_101(world: World) -> None:
    s = world.raw()
    s.sendall(
        f"GET /ws HTTP/1.1\r\nHost: catalog:{HTTP_PORT}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = read_until(s, b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    assert b"upgrade: websocket" in head.lower() and b"connection: upgrade" in head.lower()
    for message in (b"\x81\x05hello", b"binary \x00\x01\x02 frames"):
        s.sendall(message)
        assert read_until(s, message.upper()[-3:]) == message.upper()
    s.shutdown(socket.SHUT_WR)
    assert read_all(s) == b""
    s.close()


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def sidecar_pid(sc: Sidecar) -> int:
    return sc.process.pid  # `python -m gossamer.cli.main` is the process itself


class RssWatch:
    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.base = {p: rss_kb(p) for p in pids}
        self.peak = dict(self.base)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for p in self.pids:
                self.peak[p] = max(self.peak[p], rss_kb(p))
            time.sleep(0.05)

    def growth_mb(self) -> dict[int, float]:
        self._stop.set()
        self._thread.join()
        return {p: (self.peak[p] - self.base[p]) / 1024 for p in self.pids}


def test_200_mb_stream_both_ways_without_buffering(world: World) -> None:
    watch = RssWatch([sidecar_pid(world.web), sidecar_pid(world.catalog)])
    block = os.urandom(1 << 20)
    digest = hashlib.sha256()

    def body() -> Iterator[bytes]:
        for _ in range(BIG // len(block)):
            digest.update(block)
            yield block

    conn = http.client.HTTPConnection("127.0.0.1", world.web.outbound, timeout=60)
    conn.request(
        "POST",
        "/count",
        body=body(),
        headers={"Host": f"catalog:{HTTP_PORT}", "Content-Length": str(BIG)},
    )
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.read().split() == [str(BIG).encode(), digest.hexdigest().encode()]
    conn.request("GET", f"/big/{BIG}", headers={"Host": f"catalog:{HTTP_PORT}"})
    resp = conn.getresponse()
    received = 0
    while chunk := resp.read(1 << 20):
        received += len(chunk)
    assert received == BIG
    conn.close()
    growth = watch.growth_mb()
    assert all(g < 40 for g in growth.values()), growth  # far below the 200 MB carried


def test_tcp_through_the_mesh_with_half_close(world: World) -> None:
    s = world.raw()
    s.sendall(f"CONNECT db:{TCP_PORT} HTTP/1.1\r\nHost: db:{TCP_PORT}\r\n\r\n".encode())
    head = read_until(s, b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    payload = os.urandom(300_000)
    s.sendall(payload)
    s.shutdown(socket.SHUT_WR)  # our side is done; the echo server answers after our EOF
    out = read_all(s)
    s.close()
    assert out == payload + f"bye {len(payload)}\n".encode()
    opened = world.catalog.metric("gossamer_tcp_connections_opened_total", source_service="web")
    assert opened >= 1


def test_tcp_denied_peer_is_closed_before_reaching_the_app(world: World) -> None:
    before = world.catalog.metric("gossamer_tcp_connections_opened_total")
    s = socket.create_connection(("127.0.0.1", world.gateway.outbound), timeout=10)
    s.sendall(f"CONNECT db:{TCP_PORT} HTTP/1.1\r\nHost: db:{TCP_PORT}\r\n\r\n".encode())
    head = read_until(s, b"\r\n\r\n")
    s.sendall(b"let me in")
    rest = read_all(s)
    s.close()
    assert head.startswith(b"HTTP/1.1 200") and rest == b""  # the tunnel closes at once
    assert world.catalog.metric("gossamer_tcp_connections_opened_total") == before
    denied = world.catalog.metric(
        "gossamer_requests_total", source_service="gateway", response_code="403"
    )
    assert denied >= 1
