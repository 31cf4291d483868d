"""The health probes written into the generated services, run against real HTTP servers."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gossamer.compose.services import http_probe, sidecar_ready_probe


@contextmanager
def admin_server(status: int, body: dict[str, object]) -> Iterator[int]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def run_probe(code: str) -> int:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30).returncode


@pytest.mark.parametrize(
    ("status", "missing", "healthy"),
    [
        (200, [], True),
        (503, ["app (connection refused)"], True),  # the app starts after its sidecar
        (503, ["certificate", "app (connection refused)"], False),
        (503, ["configuration"], False),
    ],
)
def test_sidecar_is_healthy_with_certificate_and_configuration(status, missing, healthy):
    with admin_server(status, {"ready": not missing, "missing": missing}) as port:
        assert (run_probe(sidecar_ready_probe(port)) == 0) is healthy


def test_probes_fail_when_nothing_listens():
    with admin_server(200, {}) as port:
        pass
    assert run_probe(sidecar_ready_probe(port)) != 0
    assert run_probe(http_probe(port, "/healthz")) != 0


def test_http_probe():
    with admin_server(200, {}) as port:
        assert run_probe(http_probe(port, "/healthz")) == 0
    with admin_server(500, {}) as port:
        assert run_probe(http_probe(port, "/healthz")) != 0
