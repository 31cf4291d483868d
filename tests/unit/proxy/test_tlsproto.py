"""TlsLayer over real loopback sockets: mutual TLS 1.3, SNI, identity, half-close."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from gossamer.errors import UpstreamConnectError
from gossamer.proxy.listeners.tcp import Pending, splice_pending
from gossamer.proxy.service import IdentityMismatch
from gossamer.proxy.transport.pool import open_mtls
from gossamer.proxy.transport.tls_contexts import (
    CredentialHolder,
    Credentials,
    build_contexts,
    port_from_sni,
    sni_for,
    spiffe_id_from_peercert,
)
from gossamer.proxy.transport.tls_transport import TlsLayer
from tests.helpers.pki import make_ca, make_workload


def creds(ca, service: str, tmp: Path) -> Credentials:
    w = make_workload(ca, service, tmp / service)
    return Credentials(w.chain_pem, w.key_pem, w.bundle_pem)


class Collect(asyncio.Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.eof = asyncio.get_running_loop().create_future()
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data += data

    def eof_received(self) -> bool:
        if not self.eof.done():
            self.eof.set_result(None)
        return True


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pki")
    ca = make_ca(tmp / "ca")
    other = make_ca(tmp / "other")
    return {
        "ca": ca,
        "server": creds(ca, "catalog", tmp),
        "client": creds(ca, "web", tmp),
        "foreign": creds(other, "web", tmp),
    }


async def tls_server(pki, on_handshake):
    ctx = build_contexts(pki["server"]).server
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(
        lambda: TlsLayer(ctx, server_side=True, on_handshake=on_handshake, handshake_timeout=2),
        "127.0.0.1",
        0,
    )
    return srv, srv.sockets[0].getsockname()[1]


async def test_mutual_tls_with_identity_sni_and_half_close(pki):
    server_side: dict[str, object] = {}

    def on_handshake(layer: TlsLayer):
        server_side["peer"] = spiffe_id_from_peercert(layer.get_extra_info("peercert"))
        server_side["sni"] = layer.sni
        proto = Collect()
        server_side["proto"] = proto
        return proto

    srv, port = await tls_server(pki, on_handshake)
    client = Collect()
    ctx = build_contexts(pki["client"]).client
    layer = await open_mtls(
        "127.0.0.1",
        port,
        client,
        context=ctx,
        sni=sni_for("catalog", "default", 8080),
        identity="spiffe://gossamer.local/ns/default/sa/catalog",
        connect_timeout=5,
    )
    assert layer.get_extra_info("ssl_object").version() == "TLSv1.3"
    layer.write(b"request")
    layer.write_eof()  # close_notify: our direction is done...
    async with asyncio.timeout(5):  # TLS 1.3: the server finishes after the client
        while "proto" not in server_side:
            await asyncio.sleep(0.01)
    proto = server_side["proto"]
    assert isinstance(proto, Collect)
    await asyncio.wait_for(proto.eof, 5)
    assert proto.data == b"request"
    assert server_side["peer"] == "spiffe://gossamer.local/ns/default/sa/web"
    assert port_from_sni(server_side["sni"]) == 8080  # type: ignore[arg-type]
    # ...but the other direction still flows
    assert proto.transport is not None
    proto.transport.write(b"answer after half-close")  # type: ignore[attr-defined]
    proto.transport.write_eof()  # type: ignore[attr-defined]
    await asyncio.wait_for(client.eof, 5)
    assert client.data == b"answer after half-close"
    srv.close()


async def test_wrong_identity_is_refused(pki):
    srv, port = await tls_server(pki, lambda layer: Collect())
    ctx = build_contexts(pki["client"]).client
    with pytest.raises(
        IdentityMismatch, match=r"expected spiffe://gossamer\.local/ns/default/sa/inventory"
    ):
        await open_mtls(
            "127.0.0.1", port, Collect(), context=ctx, sni="x",
            identity="spiffe://gossamer.local/ns/default/sa/inventory", connect_timeout=5,
        )  # fmt: skip
    srv.close()


async def test_foreign_ca_and_missing_client_certificate_are_refused(pki):
    accepted: list[TlsLayer] = []

    def on_handshake(layer: TlsLayer) -> Collect:
        accepted.append(layer)
        return Collect()

    srv, port = await tls_server(pki, on_handshake)
    foreign = build_contexts(pki["foreign"]).client
    with pytest.raises(UpstreamConnectError):
        # the server's chain does not verify against the foreign bundle either
        await open_mtls(
            "127.0.0.1", port, Collect(), context=foreign, sni="x", identity=None, connect_timeout=5
        )
    # a client that trusts the server but has no certificate of its own
    bare = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    bare.check_hostname = False
    bare.load_verify_locations(cadata=pki["server"].bundle_pem.decode())
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=bare)
    with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
        writer.write(b"hello")
        await writer.drain()
        data = await asyncio.wait_for(reader.read(10), 5)
        if not data:
            raise ConnectionError("closed")
    assert accepted == []
    srv.close()


async def test_rotation_applies_to_new_connections_only(pki, tmp_path):
    holder = CredentialHolder(pki["server"])
    first_serial = holder.contexts.serial  # type: ignore[union-attr]
    loop = asyncio.get_running_loop()
    seen: list[int] = []

    def factory() -> TlsLayer:
        assert holder.contexts is not None
        return TlsLayer(
            holder.contexts.server, server_side=True, on_handshake=lambda layer: Collect()
        )

    srv = await loop.create_server(factory, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    ctx = build_contexts(pki["client"]).client

    async def serial() -> tuple[int, TlsLayer]:
        layer = await open_mtls(
            "127.0.0.1", port, Collect(), context=ctx, sni="x", identity=None, connect_timeout=5
        )
        cert = layer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        from cryptography import x509

        return x509.load_der_x509_certificate(cert).serial_number, layer

    s1, old = await serial()
    seen.append(s1)
    holder.update(creds(pki["ca"], "catalog", tmp_path))  # a renewed leaf
    s2, _ = await serial()
    assert s1 == first_serial
    assert holder.contexts is not None and s2 == holder.contexts.serial
    assert s2 != s1
    old.write(b"still open")  # the old connection keeps working
    assert not old.is_closing()
    srv.close()


async def test_relay_passes_half_close_through_tls(pki):
    """client -(TLS)- relay -(plain)- echo server that answers after EOF."""

    async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        data = await r.read()  # until EOF
        w.write(b"got " + data)
        await w.drain()
        w.close()

    echo_srv = await asyncio.start_server(echo, "127.0.0.1", 0)
    echo_port = echo_srv.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[None]] = []

    def on_handshake(layer: TlsLayer):
        down = Pending()

        async def go() -> None:
            up = Pending()
            transport, _ = await loop.create_connection(lambda: up, "127.0.0.1", echo_port)
            splice_pending(layer, down, transport, up)

        tasks.append(loop.create_task(go()))
        return down

    srv, port = await tls_server(pki, on_handshake)
    client = Collect()
    layer = await open_mtls(
        "127.0.0.1", port, client, context=build_contexts(pki["client"]).client, sni="x",
        identity=None, connect_timeout=5,
    )  # fmt: skip
    layer.write(b"ping")
    layer.write_eof()
    await asyncio.wait_for(client.eof, 5)
    assert client.data == b"got ping"
    srv.close()
    echo_srv.close()
