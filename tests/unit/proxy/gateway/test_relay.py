"""The gateway's data path on real sockets: hello, route, splice, limits, counting."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from pathlib import Path

import pytest

from gossamer.contract import xds
from gossamer.contract.identity import ServiceKey
from gossamer.proxy.config import Cluster, Endpoint, NodeInfo, ProxyConfig
from gossamer.proxy.gateway.metrics import GatewayMetrics
from gossamer.proxy.gateway.relay import RelayLimits, Relays
from gossamer.proxy.gateway.table import RouteTable
from tests.helpers.pki import make_ca, make_workload

TD = "gossamer.local"
CATALOG = ServiceKey("default", "catalog")
SNI = xds.sni(TD, CATALOG, 8080)


def table_for(port: int) -> RouteTable:
    name = xds.outbound_cluster(CATALOG, 8080)
    cluster = Cluster(name, "catalog", 8080, identity=f"spiffe://{TD}/ns/default/sa/catalog")
    config = ProxyConfig(
        node=NodeInfo("gateway", "gossamer-system", trust_domain=TD),
        clusters={name: cluster},
        endpoints={name: (Endpoint("127.0.0.1", port, node="node-2"),)},
    )
    return RouteTable.build(config, "node-2")


def client_hello(server_name: str) -> bytes:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    with pytest.raises(ssl.SSLWantReadError):
        ctx.wrap_bio(incoming, outgoing, server_hostname=server_name).do_handshake()
    return outgoing.read()


async def start(relays: Relays) -> tuple[asyncio.AbstractServer, int]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(relays.factory(), "127.0.0.1", 0)
    relays.start()
    return server, server.sockets[0].getsockname()[1]


async def closed(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(1), 5) == b""
    except ConnectionResetError:
        return True


async def test_bytes_pass_untouched_with_half_close_and_are_counted():
    """After the hello, 4 MiB go up; the upstream answers after the client's EOF."""

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        digest, total = hashlib.sha256(), 0
        while chunk := await reader.read(65536):
            digest.update(chunk)
            total += len(chunk)
        writer.write(f"bye {total} {digest.hexdigest()}".encode())
        await writer.drain()
        writer.close()

    app = await asyncio.start_server(upstream, "127.0.0.1", 0)
    metrics = GatewayMetrics()
    relays = Relays(RelayLimits(), metrics)
    relays.table = table_for(app.sockets[0].getsockname()[1])
    server, port = await start(relays)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        payload = client_hello(SNI) + bytes(range(256)) * 16384
        writer.write(payload)
        await writer.drain()
        writer.write_eof()
        answer = await asyncio.wait_for(reader.read(), 10)
        assert answer == f"bye {len(payload)} {hashlib.sha256(payload).hexdigest()}".encode()
        writer.close()
        for _ in range(50):
            if metrics.active == 0:
                break
            await asyncio.sleep(0.05)
        assert metrics.active == 0
        # 127.0.0.1 is where node-2's instance registered: the peer is node-2 itself
        assert metrics.connections[("catalog.default", "node-2")] == 1
        assert metrics.bytes[("catalog.default", "node-2", "received")] == len(payload)
        assert metrics.bytes[("catalog.default", "node-2", "sent")] == len(answer)
    finally:
        server.close()
        app.close()
        await relays.stop()


async def test_tls_end_to_end_through_the_gateway(tmp_path: Path):
    ca = make_ca(tmp_path / "ca")
    callee = make_workload(ca, "catalog", tmp_path / "catalog")
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(callee.chain_file, callee.key_file)

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write((await reader.readline()).upper())
        await writer.drain()
        writer.close()

    app = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=server_ctx)
    relays = Relays(RelayLimits(), GatewayMetrics())
    relays.table = table_for(app.sockets[0].getsockname()[1])
    server, port = await start(relays)
    try:
        client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client_ctx.check_hostname = False
        client_ctx.load_verify_locations(callee.bundle_file)
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_ctx, server_hostname=SNI
        )
        cert = writer.get_extra_info("peercert")
        assert ("URI", callee.spiffe_id) in cert["subjectAltName"]  # the callee's, not ours
        writer.write(b"hello\n")
        assert await asyncio.wait_for(reader.readline(), 5) == b"HELLO\n"
        writer.close()
    finally:
        server.close()
        app.close()
        await relays.stop()


async def test_refusals_are_counted_and_the_cap_displaces_unrouted_connections():
    metrics = GatewayMetrics()
    relays = Relays(RelayLimits(max_connections=3, hello_timeout=0.5), metrics)
    relays.table = table_for(1)  # nothing listens on port 1: connect_failure
    server, port = await start(relays)
    try:
        for data, reason in (
            (b"GET / HTTP/1.1\r\n\r\n", "not_tls"),
            (b"\x16\x03\x01\x00\x00", "malformed"),
            (client_hello("example.com"), "unknown_sni"),
            (client_hello(SNI), "connect_failure"),
        ):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(data)
            assert await closed(reader), reason
            assert metrics.rejected[reason] == 1, (reason, metrics.rejected)
            writer.close()
        # silent connections: the cap (3) displaces the oldest for a newcomer
        silent = [await asyncio.open_connection("127.0.0.1", port) for _ in range(4)]
        assert await closed(silent[0][0])
        assert metrics.rejected["overflow"] >= 1
        # the others time out waiting for their hello
        for reader, _ in silent[1:]:
            assert await closed(reader)
        assert metrics.rejected["hello_timeout"] == 3
        for _, writer in silent:
            writer.close()
    finally:
        server.close()
        await relays.stop()


async def test_an_idle_relay_is_closed_and_counted(monkeypatch):
    monkeypatch.setattr("gossamer.proxy.gateway.relay.SWEEP_INTERVAL", 0.1)

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    app = await asyncio.start_server(silent, "127.0.0.1", 0)
    metrics = GatewayMetrics()
    relays = Relays(RelayLimits(idle_timeout=0.5), metrics)
    relays.table = table_for(app.sockets[0].getsockname()[1])
    server, port = await start(relays)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(client_hello(SNI))
        started = asyncio.get_running_loop().time()
        assert await closed(reader)
        assert 0.4 < asyncio.get_running_loop().time() - started < 3
        assert metrics.idle_closed == 1 and metrics.connections[("catalog.default", "node-2")] == 1
        writer.close()
    finally:
        server.close()
        app.close()
        await relays.stop()
