"""Issue 17, finding 6: a request that stalls is cut (Envoy's `stream_idle_timeout` and
`request_timeout`, set per service in mesh.yaml and carried over xDS).

A control plane, sidecars and a recording app (a thread here, on a real socket: it
notes when a request it was sent ends before its body did). The attacks, each on the
inbound side (a mesh peer over mTLS, HTTP/1.1 and HTTP/2) and on the outbound side (the
app's own client, HTTP/1.1 and h2c):
- a body trickled 1 byte every 0.5 s: never idle, so only the request timeout (2 s)
  cuts it; before the fix nothing did (the peer held an app connection for minutes);
- a body that stops after its first byte: the idle timeout (1 s) cuts it.
The client gets 408 (or its stream reset) within the bound, and the app sees its
request end. A slow request that keeps progressing and ends within the request timeout
gets its answer.
"""

from __future__ import annotations

import queue
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest

from gossamer.certs.ca import CertificateAuthority
from gossamer.proxy.transport.tls_contexts import _load_chain, sni_for
from tests.helpers.pki import make_workload
from tests.helpers.procs import free_port, processes
from tests.helpers.xds_mesh import XdsMesh, XdsSidecar

pytestmark = pytest.mark.e2e

PORT = 8080
REQUEST_TIMEOUT = 2.0
IDLE_TIMEOUT = 1.0
SWEEP = 0.5  # the sidecar looks at deadlines twice a second
SLACK = 1.0  # scheduling on a loaded machine
GIVE_UP = REQUEST_TIMEOUT + 4.0  # the attack goes on this long at most (the old code: on)
TRICKLE = 0.5  # seconds between two bytes
BODY = 100  # announced body length: at 1 byte per 0.5 s, 50 s to send

SERVICES = [
    # the callee of the inbound tests; its route's idle_timeout also governs callers
    {
        "name": "catalog",
        "ports": [{"port": PORT, "protocol": "http"}],
        "stream_idle_timeout": f"{IDLE_TIMEOUT}s",
        "request_timeout": f"{REQUEST_TIMEOUT}s",
    },
    # lax itself: a request to it that stalls is cut by the caller's outbound side
    {
        "name": "ledger",
        "ports": [{"port": PORT, "protocol": "http"}],
        "stream_idle_timeout": "30s",
        "request_timeout": "30s",
    },
    # the caller: its own request_timeout bounds what its app sends
    {
        "name": "web",
        "ports": [{"port": PORT, "protocol": "http"}],
        "request_timeout": f"{REQUEST_TIMEOUT}s",
    },
]


# -- the recording app ---------------------------------------------------------------------
@dataclass
class Seen:
    path: str
    outcome: str  # "complete" or "aborted"
    received: int
    at: float  # time.monotonic() of the outcome


class RecordingApp:
    """HTTP/1.1 app on a real socket: reads each request's body to its Content-Length,
    answers 200 `got N` (and closes), or records that the request ended early."""

    def __init__(self) -> None:
        self.port = free_port()
        self.seen: queue.Queue[Seen] = queue.Queue()
        self._server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return  # a pooled connection closed idle: no request
                    data += chunk
            except OSError:
                return
            head, _, body = data.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            path = lines[0].split(" ")[1]
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            received = len(body)
            try:
                while received < length:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    received += len(chunk)
            except OSError:
                pass
            if received < length:
                self.seen.put(Seen(path, "aborted", received, time.monotonic()))
                return
            self.seen.put(Seen(path, "complete", received, time.monotonic()))
            reply = b"got %d" % received
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                % (len(reply), reply)
            )

    def outcome(self, path: str, timeout: float = 10.0) -> Seen:
        """What the app saw of the request for `path`."""
        end = time.monotonic() + timeout
        while True:
            try:
                seen = self.seen.get(timeout=max(0.01, end - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"the app saw no end of {path}") from None
            if seen.path == path:
                return seen


# -- the world ---------------------------------------------------------------------------------
class World:
    def __init__(self, mesh: XdsMesh) -> None:
        self.mesh = mesh
        self.app = RecordingApp()
        mesh.start_control()
        self.catalog = mesh.sidecar("catalog", self.app.port)
        self.ledger = mesh.sidecar("ledger", self.app.port)
        self.web = mesh.sidecar("web", self.app.port)
        peer = make_workload(CertificateAuthority.load(mesh.tmp / "ca"), "web", mesh.tmp / "peer")
        self.peer_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.peer_tls.check_hostname = False
        self.peer_tls.load_verify_locations(cadata=peer.bundle_pem.decode())
        _load_chain(self.peer_tls, peer.chain_pem, peer.key_pem)
        for sidecar in (self.web,):  # routes to both callees have arrived
            _wait_routable(sidecar)

    def peer(self, target: XdsSidecar, *, h2: bool = False) -> ssl.SSLSocket:
        """A mesh peer's mTLS connection to `target`'s inbound port."""
        ctx = self.peer_tls
        if h2:
            ctx.set_alpn_protocols(["h2"])
        else:
            ctx.set_alpn_protocols(["http/1.1"])
        raw = socket.create_connection(("127.0.0.1", target.inbound), timeout=10)
        name = sni_for(target.service, "default", PORT)
        return ctx.wrap_socket(raw, server_hostname=name)

    def app_client(self) -> socket.socket:
        """The app's own connection to web's outbound port."""
        return socket.create_connection(("127.0.0.1", self.web.outbound), timeout=10)


def _wait_routable(sidecar: XdsSidecar) -> None:
    end = time.monotonic() + 30
    while time.monotonic() < end:
        status, _ = sidecar.get("catalog:8080", "/ready-check")
        if status == 200:
            return
        time.sleep(0.2)
    raise AssertionError("web never routed to catalog")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with processes() as procs:
        yield World(XdsMesh(tmp_path_factory.mktemp("stream-timeouts"), procs, SERVICES))


# -- HTTP/1.1 --------------------------------------------------------------------------------
def _trickle_h1(
    sock: socket.socket, host: str, path: str, *, stop_after: int | None = None, total: int = BODY
) -> tuple[str, float, bytes]:
    """POST `path` announcing `total` body bytes, then send one byte every TRICKLE
    seconds (only `stop_after` of them, then nothing) until the sidecar answers or
    closes, or GIVE_UP passes: (what ended it, seconds after the head, the bytes read)."""
    sock.setblocking(True)
    sock.sendall(
        b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n"
        % (path.encode(), host.encode(), total)
    )
    start = time.monotonic()
    sent = 0
    got = b""
    while time.monotonic() - start < GIVE_UP:
        if sent < total and (stop_after is None or sent < stop_after):
            try:
                sock.sendall(b"x")
                sent += 1
            except OSError:
                return "reset", time.monotonic() - start, got
        pending = sock.pending() if isinstance(sock, ssl.SSLSocket) else 0
        if pending or select.select([sock], [], [], TRICKLE)[0]:
            try:
                data = sock.recv(65536)
            except (OSError, ssl.SSLError):
                return "reset", time.monotonic() - start, got
            if not data:
                return "closed", time.monotonic() - start, got
            got += data
            if b"\r\n\r\n" in got:
                if sent >= total:  # a complete request: wait for the whole answer
                    body = got.partition(b"\r\n\r\n")[2]
                    if body:
                        return "answered", time.monotonic() - start, got
                    continue
                return "answered", time.monotonic() - start, got
    return "still open", time.monotonic() - start, got


def _assert_cut(how: str, after: float, got: bytes, limit: float, code: bytes) -> None:
    assert how != "still open", f"not cut after {after:.1f} s (the limit is {limit} s)"
    assert after < limit + SWEEP + SLACK, f"cut only after {after:.1f} s"
    assert after >= limit - 0.3, f"cut too early, after {after:.1f} s"
    if got:  # 408 when it got through; a reset is also a cut
        assert got.startswith(b"HTTP/1.1 408"), got
        assert b"x-gossamer-error: " + code in got, got


def _assert_app_saw_abort(world: World, path: str, started: float, limit: float) -> None:
    seen = world.app.outcome(path)
    assert seen.outcome == "aborted", seen
    assert seen.at - started < limit + SWEEP + SLACK + 0.5, (
        f"the app's request ended {seen.at - started:.1f} s after it began"
    )


def test_inbound_h1_trickled_body_is_cut_by_the_request_timeout(world: World) -> None:
    started = time.monotonic()
    with world.peer(world.catalog) as sock:
        how, after, got = _trickle_h1(sock, "catalog", "/in-h1-trickle")
    print(f"inbound HTTP/1.1 trickle: {how} after {after:.2f} s")
    _assert_cut(how, after, got, REQUEST_TIMEOUT, b"request-timeout")
    _assert_app_saw_abort(world, "/in-h1-trickle", started, REQUEST_TIMEOUT)
    counted = world.catalog.metric(
        "gossamer_downstream_stream_timeouts_total", listener="inbound", reason="request"
    )
    assert counted >= 1


def test_inbound_h1_stalled_body_is_cut_by_the_idle_timeout(world: World) -> None:
    started = time.monotonic()
    with world.peer(world.catalog) as sock:
        how, after, got = _trickle_h1(sock, "catalog", "/in-h1-stall", stop_after=1)
    print(f"inbound HTTP/1.1 stall: {how} after {after:.2f} s")
    _assert_cut(how, after, got, IDLE_TIMEOUT, b"stream-idle-timeout")
    _assert_app_saw_abort(world, "/in-h1-stall", started, IDLE_TIMEOUT)


def test_inbound_h1_slow_but_progressing_request_is_answered(world: World) -> None:
    with world.peer(world.catalog) as sock:
        # 3 bytes, 0.5 s apart: longer than the idle timeout in all, never idle that long
        how, _, got = _trickle_h1(sock, "catalog", "/in-h1-slow", total=3)
    assert how == "answered" and got.startswith(b"HTTP/1.1 200"), (how, got)
    assert got.endswith(b"got 3")
    assert world.app.outcome("/in-h1-slow").outcome == "complete"


def test_outbound_h1_trickled_body_is_cut_by_the_callers_request_timeout(world: World) -> None:
    # ledger's own timeouts are 30 s: web's outbound side cuts it
    started = time.monotonic()
    with world.app_client() as sock:
        how, after, got = _trickle_h1(sock, "ledger:8080", "/out-h1-trickle")
    print(f"outbound HTTP/1.1 trickle: {how} after {after:.2f} s")
    _assert_cut(how, after, got, REQUEST_TIMEOUT, b"request-timeout")
    _assert_app_saw_abort(world, "/out-h1-trickle", started, REQUEST_TIMEOUT)
    counted = world.web.metric(
        "gossamer_downstream_stream_timeouts_total", listener="outbound", reason="request"
    )
    assert counted >= 1


def test_outbound_h1_stalled_body_is_cut_by_the_routes_idle_timeout(world: World) -> None:
    started = time.monotonic()
    with world.app_client() as sock:
        how, after, got = _trickle_h1(sock, "catalog:8080", "/out-h1-stall", stop_after=1)
    print(f"outbound HTTP/1.1 stall: {how} after {after:.2f} s")
    _assert_cut(how, after, got, IDLE_TIMEOUT, b"stream-idle-timeout")
    _assert_app_saw_abort(world, "/out-h1-stall", started, IDLE_TIMEOUT)


def test_outbound_h1_slow_but_progressing_request_is_answered(world: World) -> None:
    with world.app_client() as sock:
        how, _, got = _trickle_h1(sock, "ledger:8080", "/out-h1-slow", total=3)
    assert how == "answered" and got.startswith(b"HTTP/1.1 200"), (how, got)


# -- HTTP/2 ----------------------------------------------------------------------------------
def _trickle_h2(
    sock: socket.socket, authority: str, path: str, scheme: str
) -> tuple[str, float, Any]:
    """One stream: a POST announcing BODY bytes, one byte of DATA every TRICKLE seconds
    until the sidecar answers or resets the stream, or GIVE_UP passes."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    sid = conn.get_next_available_stream_id()
    conn.send_headers(
        sid,
        [
            (":method", "POST"),
            (":path", path),
            (":scheme", scheme),
            (":authority", authority),
            ("content-length", str(BODY)),
        ],
    )
    sock.sendall(conn.data_to_send())
    start = time.monotonic()
    while time.monotonic() - start < GIVE_UP:
        try:
            conn.send_data(sid, b"x")
            sock.sendall(conn.data_to_send())
        except Exception:
            return "stream closed", time.monotonic() - start, None
        deadline = time.monotonic() + TRICKLE
        while (left := deadline - time.monotonic()) > 0:
            pending = sock.pending() if isinstance(sock, ssl.SSLSocket) else 0
            if not pending and not select.select([sock], [], [], left)[0]:
                break
            data = sock.recv(65536)
            if not data:
                return "closed", time.monotonic() - start, None
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived) and event.stream_id == sid:
                    return "answered", time.monotonic() - start, dict(event.headers)
                if isinstance(event, h2.events.StreamReset) and event.stream_id == sid:
                    return "reset", time.monotonic() - start, event.error_code
            sock.sendall(conn.data_to_send())
    return "still open", time.monotonic() - start, None


def _assert_h2_cut(how: str, after: float, what: Any) -> None:
    assert how != "still open", f"not cut after {after:.1f} s"
    assert REQUEST_TIMEOUT - 0.3 <= after < REQUEST_TIMEOUT + SWEEP + SLACK, after
    if how == "answered":
        assert what[b":status"] == b"408", what
        assert what[b"x-gossamer-error"] == b"request-timeout", what


def test_inbound_h2_trickled_body_is_cut(world: World) -> None:
    started = time.monotonic()
    with world.peer(world.catalog, h2=True) as sock:
        assert sock.selected_alpn_protocol() == "h2"
        how, after, what = _trickle_h2(sock, "catalog", "/in-h2-trickle", "https")
    print(f"inbound HTTP/2 trickle: {how} after {after:.2f} s")
    _assert_h2_cut(how, after, what)
    _assert_app_saw_abort(world, "/in-h2-trickle", started, REQUEST_TIMEOUT)


def test_outbound_h2c_trickled_body_is_cut(world: World) -> None:
    started = time.monotonic()
    with world.app_client() as sock:
        how, after, what = _trickle_h2(sock, "ledger:8080", "/out-h2-trickle", "http")
    print(f"outbound h2c trickle: {how} after {after:.2f} s")
    _assert_h2_cut(how, after, what)
    _assert_app_saw_abort(world, "/out-h2-trickle", started, REQUEST_TIMEOUT)
