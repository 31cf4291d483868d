"""A stand-in for a host's resolver (Docker's embedded DNS, a LAN server) in e2e tests.

    python -m tests.helpers.dns_upstream --listen 127.0.0.2 --answer outside.test=192.0.2.7

Answers A queries for the names given, NXDOMAIN for the rest, over UDP and TCP on port
53 (or --port), and prints one line per query (`udp NAME TYPE`) so a test can tell
which queries reached it.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import struct
from typing import Any

from gossamer.proxy.transport import dns_wire as wire


def reply(data: bytes, table: dict[str, str]) -> bytes | None:
    try:
        query = wire.parse_query(data)
    except wire.Malformed:
        return None
    address = table.get(query.name)
    if address is not None:
        return wire.answer(query, (socket.inet_aton(address),), 60)
    out = bytearray(wire.answer(query, (), 60))
    out[3] = (out[3] & 0xF0) | wire.RCODE_NXDOMAIN
    return bytes(out)


def note(kind: str, data: bytes) -> None:
    try:
        query = wire.parse_query(data)
        print(kind, query.name, query.qtype, flush=True)
    except wire.Malformed as exc:
        print(kind, "malformed", exc.reason, flush=True)


class Udp(asyncio.DatagramProtocol):
    def __init__(self, table: dict[str, str]) -> None:
        self.table = table
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        note("udp", data)
        answer = reply(data, self.table)
        if answer is not None:
            self.transport.sendto(answer, addr)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", default="127.0.0.2")
    parser.add_argument("--port", type=int, default=53)
    parser.add_argument("--answer", action="append", default=[], help="NAME=IPV4")
    args = parser.parse_args()
    table = dict(item.split("=", 1) for item in args.answer)
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(lambda: Udp(table), local_addr=(args.listen, args.port))

    async def tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            (length,) = struct.unpack("!H", await reader.readexactly(2))
            data = await reader.readexactly(length)
            note("tcp", data)
            answer = reply(data, table)
            if answer is not None:
                writer.write(struct.pack("!H", len(answer)) + answer)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(tcp, args.listen, args.port)
    print(f"listening {args.listen}:{args.port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
