"""Active health checks: thresholds in a row move a host out and back (pure), and a
probe over a real socket passes or fails by status, refusal and timeout."""

from __future__ import annotations

import asyncio
import random

import pytest

from gossamer.proxy.config import Cluster, Endpoint, HealthCheck
from gossamer.proxy.transport.pool import open_plain
from gossamer.proxy.upstream.balancer import Host
from gossamer.proxy.upstream.health_check import HealthChecker, http_request, observe, parse_status

CHECK = HealthCheck(http_path="/healthz", unhealthy_threshold=3, healthy_threshold=2)


def test_thresholds_in_a_row_move_a_host_out_and_back():
    h = Host(Endpoint("10.0.0.1", 1))
    assert [observe(h, ok, CHECK) for ok in (False, False, True, False, False)] == [False] * 5
    assert not h.hc_failed  # a success broke the streak
    assert observe(h, False, CHECK) and h.hc_failed
    assert [observe(h, ok, CHECK) for ok in (True, False, True)] == [False] * 3
    assert observe(h, True, CHECK) and not h.hc_failed


def test_expected_statuses_and_the_request():
    assert CHECK.expected(200) and not CHECK.expected(204)
    ranged = HealthCheck(http_path="/", expected_statuses=((200, 300), (404, 405)))
    assert ranged.expected(204) and ranged.expected(404) and not ranged.expected(500)
    assert http_request(CHECK, "catalog").startswith(b"GET /healthz HTTP/1.1\r\nHost: catalog\r\n")
    assert parse_status(b"HTTP/1.1 503 Service Unavailable") == 503
    with pytest.raises(ValueError):
        parse_status(b"SSH-2.0")


async def _server(status: bytes, delay: float = 0.0) -> tuple[asyncio.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(delay)
        writer.write(b"HTTP/1.1 " + status + b" X\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _opener(
    cluster: Cluster, ep: Endpoint, proto: asyncio.BaseProtocol, limit: float, h2: bool
):
    return await open_plain(ep.address, ep.port, proto, limit)


def test_probes_over_real_sockets():
    async def scenario() -> None:
        checker = HealthChecker(_opener, rng=random.Random(1), on_change=lambda name: None)
        ok_server, ok_port = await _server(b"200")
        bad_server, bad_port = await _server(b"503")
        slow_server, slow_port = await _server(b"200", delay=2.0)
        check = HealthCheck(http_path="/healthz", timeout=0.3)
        cluster = Cluster("c", "catalog", 80, tls=False, health_check=check)
        assert await checker.probe(cluster, Endpoint("127.0.0.1", ok_port), check)
        assert not await checker.probe(cluster, Endpoint("127.0.0.1", bad_port), check)
        assert not await checker.probe(cluster, Endpoint("127.0.0.1", slow_port), check)
        bad_server.close()
        await bad_server.wait_closed()
        tcp = HealthCheck(timeout=0.3)
        assert await checker.probe(cluster, Endpoint("127.0.0.1", ok_port), tcp)
        assert not await checker.probe(cluster, Endpoint("127.0.0.1", bad_port), tcp)
        ok_server.close()
        slow_server.close()

    asyncio.run(scenario())


def test_the_checker_takes_a_failing_host_out_and_stops_with_the_target():
    async def scenario() -> None:
        changed: list[str] = []
        failures: list[str] = []
        server, port = await _server(b"503")
        check = HealthCheck(http_path="/", interval=0.02, timeout=0.5, unhealthy_threshold=2)
        cluster = Cluster("c", "catalog", 80, tls=False, health_check=check)
        host = Host(Endpoint("127.0.0.1", port))
        checker = HealthChecker(
            _opener, rng=random.Random(1), on_change=changed.append, on_failure=failures.append
        )
        checker.sync({("c", host.endpoint.key): (cluster, host)})
        async with asyncio.timeout(5):
            while not host.hc_failed:
                await asyncio.sleep(0.01)
        assert changed == ["c"] and len(failures) >= 2
        checker.sync({})  # no longer checked: back in service, no task left
        assert not host.hc_failed and checker.checking == 0
        server.close()

    asyncio.run(scenario())


def test_the_cluster_avoids_hosts_failing_checks_unless_in_panic():
    from gossamer.proxy.upstream.balancer import RoundRobin
    from gossamer.proxy.upstream.runtime import ClusterRuntime

    hs = [Host(Endpoint(f"10.0.0.{i}", 1)) for i in range(3)]
    config = Cluster("c", "catalog", 80, tls=False, panic_threshold=50.0, health_check=CHECK)
    rt = ClusterRuntime(config, hs, RoundRobin(hs, random.Random(1), lambda: 0.0), {}, lambda: 0.0)
    hs[0].hc_failed = True
    rt.health_changed()
    assert {rt.choose([], []) for _ in range(12)} == {hs[1], hs[2]}
    hs[1].hc_failed = True  # 1 of 3 healthy < 50%: panic, every host
    rt.health_changed()
    assert {rt.choose([], []) for _ in range(12)} == set(hs)


async def _h2_server(status: bytes) -> tuple[asyncio.Server, int, list[dict[bytes, bytes]]]:
    """A minimal h2c server answering every request with `status`."""
    import h2.config
    import h2.connection
    import h2.events

    seen: list[dict[bytes, bytes]] = []

    class Server(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.conn = h2.connection.H2Connection(
                h2.config.H2Configuration(client_side=False, header_encoding=None)
            )
            self.conn.initiate_connection()

        def data_received(self, data: bytes) -> None:
            for ev in self.conn.receive_data(data):
                if isinstance(ev, h2.events.RequestReceived):
                    seen.append(dict(ev.headers))
                    self.conn.send_headers(ev.stream_id, [(b":status", status)], end_stream=True)
            self.transport.write(self.conn.data_to_send())  # type: ignore[attr-defined]

    server = await asyncio.get_running_loop().create_server(Server, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], seen


def test_an_http2_probe_reads_the_status_over_h2():
    async def scenario() -> None:
        checker = HealthChecker(_opener, rng=random.Random(1), on_change=lambda name: None)
        check = HealthCheck(http_path="/ping", timeout=1.0, http2=True)
        cluster = Cluster("c", "echo", 50051, tls=False, health_check=check)
        ok, ok_port, seen = await _h2_server(b"200")
        bad, bad_port, _ = await _h2_server(b"503")
        assert await checker.probe(cluster, Endpoint("127.0.0.1", ok_port), check)
        assert not await checker.probe(cluster, Endpoint("127.0.0.1", bad_port), check)
        assert seen[0][b":path"] == b"/ping" and seen[0][b":authority"] == b"echo"
        assert seen[0][b":method"] == b"GET" and seen[0][b":scheme"] == b"http"
        ok.close()
        bad.close()

    asyncio.run(scenario())
