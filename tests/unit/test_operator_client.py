"""The CLI's operator-API clients (operator_client.py, and observe_client.py through
aiohttp) send a GET once more when its connection is reset before any answer (an API at its connection cap displaces such connections), and never
resends a POST. A real local socket server resets the first connections it accepts."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator

import pytest

from gossamer.errors import GossamerError, UpstreamConnectError
from gossamer.observe.observe_client import ControlApi
from gossamer.operator_client import ApiClient


class ResettingServer:
    """Accepts connections; the first `resets` are closed with a TCP reset after the
    request head arrives, later ones get `200 {"ok": true}`."""

    def __init__(self, resets: int) -> None:
        self.resets = resets
        self.accepted = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                self.accepted += 1
                conn.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                if self.accepted <= self.resets:
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    continue  # closing with linger 0 sends RST
                body = b'{"ok": true}'
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
                )

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() of the server thread
        self.sock.close()
        self.thread.join(5)


@pytest.fixture
def server_resetting_once() -> Iterator[ResettingServer]:
    server = ResettingServer(resets=1)
    yield server
    server.close()


def test_a_get_reset_once_is_sent_again(server_resetting_once: ResettingServer) -> None:
    client = ApiClient(f"http://127.0.0.1:{server_resetting_once.port}", None)
    assert client.get("/healthz") == {"ok": True}
    assert server_resetting_once.accepted == 2


def test_a_get_reset_twice_is_an_error() -> None:
    server = ResettingServer(resets=2)
    try:
        client = ApiClient(f"http://127.0.0.1:{server.port}", None)
        with pytest.raises(UpstreamConnectError, match="cannot reach the control plane"):
            client.get("/healthz")
        assert server.accepted == 2
    finally:
        server.close()


def test_a_post_is_never_resent(server_resetting_once: ResettingServer) -> None:
    client = ApiClient(f"http://127.0.0.1:{server_resetting_once.port}", None)
    with pytest.raises(UpstreamConnectError):
        client.request("POST", "/v1/api-tokens", {"name": "x"})
    assert server_resetting_once.accepted == 1


async def test_the_observe_client_sends_a_reset_get_again(
    server_resetting_once: ResettingServer,
) -> None:
    """`stat`, `top`, `edges` and `series` use aiohttp, which itself sends an
    idempotent request once more when the server disconnects before an answer."""
    api = ControlApi(f"http://127.0.0.1:{server_resetting_once.port}", "token")
    assert await api.get("/v1/overview") == {"ok": True}
    assert server_resetting_once.accepted == 2


async def test_the_observe_client_gives_up_after_a_second_reset() -> None:
    server = ResettingServer(resets=2)
    try:
        api = ControlApi(f"http://127.0.0.1:{server.port}", "token")
        with pytest.raises(GossamerError, match="cannot reach the control plane"):
            await api.get("/v1/overview")
        assert server.accepted == 2
    finally:
        server.close()
