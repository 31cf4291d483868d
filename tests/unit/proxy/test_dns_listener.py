"""The DNS listener on loopback sockets (proxy/listeners/dns.py): answers, forwarding
over UDP and TCP to a stand-in upstream, malformed input, and the pending bound."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gossamer.proxy.config import Cluster, Endpoint
from gossamer.proxy.listeners.dns import DnsServer
from gossamer.proxy.routing.mesh_names import VipAllocator, build
from gossamer.proxy.transport import dns_wire as wire

OUTSIDE = socket.inet_aton("192.0.2.7")


def names() -> Any:
    cluster = Cluster("outbound|8080||catalog.default", "catalog", 8080,
                      identity="spiffe://gossamer.local/ns/default/sa/catalog")  # fmt: skip
    gateway = Endpoint("10.0.0.12", 15443, node="node-2")
    return build({cluster.name: cluster}, {cluster.name: (gateway,)}, own_node="node-1",
                 own_namespace="default", trust_domain="gossamer.local",
                 allocator=VipAllocator())  # fmt: skip


class Upstream(asyncio.DatagramProtocol):
    """Answers `outside.example` with 192.0.2.7, NXDOMAIN otherwise; `silent` drops all."""

    def __init__(self) -> None:
        self.seen: list[bytes] = []
        self.silent = False
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def reply(self, data: bytes) -> bytes:
        query = wire.parse_query(data)
        if query.name == "outside.example":
            return wire.answer(query, (OUTSIDE,), 60)
        out = bytearray(wire.answer(query, (), 60))
        out[3] = (out[3] & 0xF0) | wire.RCODE_NXDOMAIN
        return bytes(out)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.seen.append(data)
        if not self.silent:
            self.transport.sendto(self.reply(data), addr)


@pytest.fixture
async def world() -> AsyncIterator[tuple[DnsServer, Upstream, int]]:
    loop = asyncio.get_running_loop()
    transport, upstream = await loop.create_datagram_endpoint(Upstream, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]

    async def tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
        reply = upstream.reply(await reader.readexactly(length))
        writer.write(struct.pack("!H", len(reply)) + reply)
        await writer.drain()
        writer.close()

    tcp_server = await asyncio.start_server(tcp, "127.0.0.1", port)
    table = names()
    server = DnsServer(lambda: table, [("127.0.0.1", port)], timeout=0.5, max_pending=2)
    bound = await server.start("127.0.0.1", 0)
    yield server, upstream, bound
    await server.stop()
    transport.close()
    tcp_server.close()


async def ask_udp(port: int, data: bytes, wait: float = 2.0) -> bytes | None:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[bytes] = loop.create_future()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, got: bytes, addr: Any) -> None:
            if not done.done():
                done.set_result(got)

    transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=("127.0.0.1", port))
    try:
        transport.sendto(data)
        return await asyncio.wait_for(done, wait)
    except TimeoutError:
        return None
    finally:
        transport.close()


async def ask_tcp(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(struct.pack("!H", len(data)) + data)
    (length,) = struct.unpack("!H", await reader.readexactly(2))
    reply = await reader.readexactly(length)
    writer.close()
    return reply


async def test_mesh_names_answered_others_forwarded_unchanged(world) -> None:
    server, upstream, port = world
    reply = await ask_udp(port, wire.build_query("catalog", ident=11))
    assert reply is not None
    vip = server.names().lookup("catalog")
    assert wire.parse_response(reply).addresses == (socket.inet_aton(vip),)
    assert upstream.seen == []  # answered here
    query = wire.build_query("outside.example", ident=12) + b"\x00\x00\x29\x10\x00"  # EDNS bits
    query = query[:11] + b"\x01" + query[12:]  # ARCOUNT 1: the bytes travel as they are
    reply = await ask_udp(port, query)
    assert reply is not None and wire.parse_response(reply).addresses == (OUTSIDE,)
    assert upstream.seen == [query]
    reply = await ask_udp(port, wire.build_query("nowhere.example"))
    assert reply is not None and wire.parse_response(reply).rcode == wire.RCODE_NXDOMAIN
    assert server.stats.as_dict()["answered"] == 1 and server.stats.forwarded == 2


async def test_tcp_answers_and_forwards(world) -> None:
    server, _upstream, port = world
    vip = server.names().lookup("catalog.default.svc")
    reply = await ask_tcp(port, wire.build_query("catalog.default.svc", ident=3))
    assert wire.parse_response(reply).addresses == (socket.inet_aton(vip),)
    reply = await ask_tcp(port, wire.build_query("outside.example", ident=4))
    assert wire.parse_response(reply).addresses == (OUTSIDE,)


async def test_malformed_input_gets_formerr_or_nothing_and_the_server_goes_on(world) -> None:
    server, _upstream, port = world
    assert await ask_udp(port, b"\x01\x02", wait=0.3) is None
    formerr = await ask_udp(port, b"\xaa\xbb\x01\x00\x00\x01" + b"\x00" * 6 + b"\x3fshort")
    assert formerr is not None and formerr[:2] == b"\xaa\xbb" and formerr[3] & 0xF == 1
    # a TCP client sending half a message is closed by the idle timeout, others served
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"\x00\x40abc")
    reply = await ask_udp(port, wire.build_query("catalog"))
    assert reply is not None and wire.parse_response(reply).addresses
    writer.close()
    assert server.stats.formerr == 1 and server.stats.dropped == 1


async def test_forwarding_is_bounded_and_a_silent_upstream_costs_no_reply(world) -> None:
    server, upstream, port = world
    upstream.silent = True
    answers = await asyncio.gather(
        *(ask_udp(port, wire.build_query(f"q{i}.example", ident=i), wait=1.0) for i in range(4))
    )
    assert answers == [None] * 4
    assert len(upstream.seen) == 2  # max_pending: the other two were dropped
    assert server.stats.dropped == 2 and server.stats.failed == 2
    upstream.silent = False
    reply = await ask_udp(port, wire.build_query("outside.example"))
    assert reply is not None and wire.parse_response(reply).addresses == (OUTSIDE,)
