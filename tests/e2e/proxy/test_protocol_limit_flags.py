"""`gossamer proxy --h2-max-concurrent-streams N` on a real sidecar: it advertises N in
its SETTINGS and refuses the stream over it with REFUSED_STREAM (the others are held
open by an app that does not answer yet). How `--max-pipelined-requests` reaches the
HTTP/1.1 server is checked in tests/unit/proxy/test_proxy_settings.py; the bound itself
in tests/e2e/proxy/test_http1_pipelining.py.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest

from tests.helpers.mesh import Mesh, Sidecar, config_doc, upstream
from tests.helpers.procs import processes

pytestmark = pytest.mark.e2e

APP_PORT = 8080
STREAM_CAP = 3


class GatedApp:
    """An HTTP/1.1 app on loopback that holds every request until `release()`."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received = 0
        self.gate = threading.Event()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                _, _, buf = buf.partition(b"\r\n\r\n")
                with self._lock:
                    self.received += 1
                self.gate.wait(20)
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")

    def release(self) -> None:
        self.gate.set()

    def close(self) -> None:
        self.gate.set()
        self.sock.close()


@pytest.fixture(scope="module")
def sidecars(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sidecar, GatedApp]]:
    app = GatedApp()
    with processes() as procs:
        mesh = Mesh(tmp_path_factory.mktemp("limitflags"), procs)
        catalog = mesh.sidecar(
            "catalog", config_doc("catalog", app_ports=[(APP_PORT, "http", app.port)])
        )
        ups = [upstream("catalog", [("127.0.0.1", catalog.inbound)], port=APP_PORT)]
        web = mesh.sidecar(
            "web",
            config_doc("web", upstreams=ups),
            extra_args=["--h2-max-concurrent-streams", str(STREAM_CAP)],
        )
        try:
            yield web, app
        finally:
            app.close()


def test_h2_stream_cap_comes_from_the_flag(sidecars: tuple[Sidecar, GatedApp]) -> None:
    web, _ = sidecars
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    with socket.create_connection(("127.0.0.1", web.outbound), timeout=10) as sock:
        sock.sendall(conn.data_to_send())
        advertised = None
        refused: list[int] = []
        headers = [(":method", "GET"), (":path", "/"), (":scheme", "http"),
                   (":authority", f"catalog:{APP_PORT}")]  # fmt: skip
        for i in range(STREAM_CAP + 1):
            conn.send_headers(1 + 2 * i, headers, end_stream=True)
        sent = False
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not refused:
            if not sent and advertised is not None:
                sock.sendall(conn.data_to_send())
                sent = True
            data = sock.recv(65536)
            if not data:
                break
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RemoteSettingsChanged):
                    changed = event.changed_settings.get(
                        h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS
                    )
                    if changed is not None:
                        advertised = changed.new_value
                elif isinstance(event, h2.events.StreamReset):
                    refused.append(event.stream_id)
            sock.sendall(conn.data_to_send())
    assert advertised == STREAM_CAP
    assert refused == [1 + 2 * STREAM_CAP]  # the one over the cap; the others wait on the app
