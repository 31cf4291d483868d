"""Issue 17, finding 7: an HTTP/2 request with a malformed `:path` (or other pseudo-header)
never reaches the app as a request line: the stream is reset with PROTOCOL_ERROR, on the
outbound listener (h2c) and on the inbound one (h2 over mTLS), and the connection keeps
serving well-formed requests."""

from __future__ import annotations

import socket
import socketserver
import ssl
import threading

import h2.config
import h2.connection
import h2.errors
import h2.events
import pytest

from gossamer.proxy.transport.tls_contexts import _load_chain, sni_for
from tests.helpers.mesh import Mesh, config_doc, upstream
from tests.helpers.procs import free_port, processes

pytestmark = pytest.mark.e2e

HTTP_PORT = 8080
BAD = [
    (b"GET", b"/a b"),
    (b"GET", b"http://evil/"),
    (b"GET", b"/a#fragment"),
    (b"GET", b"*"),
    (b"GET", b"evil"),
    (b"GET /x", b"/"),
]


class Recorder(socketserver.StreamRequestHandler):
    """An app that records every request line it gets and answers 200 "ok"."""

    lines: list[bytes] = []

    def handle(self) -> None:
        while line := self.rfile.readline():
            Recorder.lines.append(line.rstrip(b"\r\n"))
            while self.rfile.readline() not in (b"\r\n", b""):
                pass
            self.wfile.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    port = free_port()
    server = socketserver.ThreadingTCPServer(("127.0.0.1", port), Recorder)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with processes() as procs:
        mesh = Mesh(tmp_path_factory.mktemp("h2paths"), procs)
        catalog = mesh.sidecar(
            "catalog", config_doc("catalog", app_ports=[(HTTP_PORT, "http", port)])
        )
        ups = [upstream("catalog", [("127.0.0.1", catalog.inbound)], port=HTTP_PORT)]
        web = mesh.sidecar("web", config_doc("web", upstreams=ups))
        yield mesh, web, catalog
    server.shutdown()


def _exchange(sock: socket.socket, method: bytes, path: bytes) -> int | str:
    """One request on a fresh h2 connection: its status, or "reset <code>"."""
    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(
            client_side=True, header_encoding=None, validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
    )  # fmt: skip
    conn.initiate_connection()
    headers = [
        (b":method", method), (b":scheme", b"http"),
        (b":authority", b"catalog:%d" % HTTP_PORT), (b":path", path),
    ]  # fmt: skip
    conn.send_headers(1, headers, end_stream=True)
    sock.sendall(conn.data_to_send())
    while True:
        data = sock.recv(65536)
        assert data, "connection closed"
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.StreamReset):
                return f"reset {h2.errors.ErrorCodes(event.error_code).name}"
            if isinstance(event, h2.events.ResponseReceived):
                return int(dict(event.headers)[b":status"])
        sock.sendall(conn.data_to_send())


def _outbound(world) -> socket.socket:
    _, web, _ = world
    return socket.create_connection(("127.0.0.1", web.outbound), timeout=10)


def _inbound(world) -> socket.socket:
    mesh, _, catalog = world
    peer = mesh.workload("web")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(cadata=peer.bundle_pem.decode())
    _load_chain(ctx, peer.chain_pem, peer.key_pem)
    ctx.set_alpn_protocols(["h2"])
    raw = socket.create_connection(("127.0.0.1", catalog.inbound), timeout=10)
    return ctx.wrap_socket(raw, server_hostname=sni_for("catalog", "default", HTTP_PORT))


@pytest.mark.parametrize("connect", [_outbound, _inbound], ids=["outbound", "inbound"])
def test_malformed_pseudo_headers_never_reach_the_app(world, connect) -> None:
    Recorder.lines.clear()
    for method, path in BAD:
        with connect(world) as sock:
            assert _exchange(sock, method, path) == "reset PROTOCOL_ERROR", (method, path)
    with connect(world) as sock:
        assert _exchange(sock, b"GET", b"/fine?x=1") == 200
    assert Recorder.lines == [b"GET /fine?x=1 HTTP/1.1"]
