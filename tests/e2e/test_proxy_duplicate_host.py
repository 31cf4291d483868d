"""A request with two Host headers is refused with 400 by a real sidecar's HTTP/1 server
(RFC 9112 §3.2; issue 17, finding 12): which one would a proxy and the app each believe?
The connection's neighbours keep being served."""

from __future__ import annotations

import http.client

import pytest

from tests.e2e.test_proxy_http import HTTP_PORT, World, good_request, read_all
from tests.helpers.mesh import Mesh
from tests.helpers.procs import processes

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    with processes() as procs:
        yield World(Mesh(tmp_path_factory.mktemp("host"), procs))


@pytest.mark.parametrize(
    "hosts",
    [
        [f"catalog:{HTTP_PORT}", "evil.example"],
        [f"catalog:{HTTP_PORT}", f"catalog:{HTTP_PORT}"],  # even when they agree
    ],
)
def test_two_host_headers_are_refused(world: World, hosts: list[str]) -> None:
    keeper = http.client.HTTPConnection("127.0.0.1", world.web.outbound, timeout=10)
    good_request(world, keeper)
    lines = "".join(f"Host: {h}\r\n" for h in hosts)
    s = world.raw()
    s.sendall(f"GET / HTTP/1.1\r\n{lines}\r\n".encode())
    out = read_all(s)
    s.close()
    assert out.startswith(b"HTTP/1.1 400"), out[:200]
    assert b"x-gossamer-error: bad-request" in out
    assert b"catalog-0" not in out  # never reached the app
    good_request(world, keeper)
    keeper.close()
