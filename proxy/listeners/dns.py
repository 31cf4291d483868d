"""The sidecar's DNS listener (UDP and TCP, 127.0.0.1:15053 by default): answers A
queries for mesh services that live only on other nodes with their virtual IP, and
forwards every other query unchanged to the original resolver.

Transparent mode redirects the app's DNS (UDP and TCP port 53) here
(`proxy/listeners/transparent.py`, `InterceptSpec.dns_port`); the sidecar's own
queries, sent as the proxy UID, are not redirected and reach the resolver of
/etc/resolv.conf (in a Compose container Docker's embedded DNS at 127.0.0.11, whose
own DNAT applies after ours). Which names are answered, and with which address:
`proxy/routing/mesh_names.py`; the messages: `proxy/transport/dns_wire.py`.

Theory of operation:
- `decide` (pure) reads a message: a malformed query with a full header gets FORMERR,
  a shorter one or a response is dropped; a standard query of class IN with one
  question for a name `MeshNames.answers` holds gets the VIP (type A) or NODATA
  (any other type, AAAA included), authoritative, TTL `ttl`; everything else is
  forwarded byte for byte (EDNS options, flags, other opcodes and classes included).
- Forwarding, UDP: one connected socket per query (a random source port, as a stub
  resolver's), the first reply carrying the query's ID is relayed, else the next
  upstream is tried after `timeout / len(upstreams)`; no reply: nothing is sent, the
  app's resolver retries as it would. TCP: one upstream connection per query, the
  two-octet length framing of RFC 1035 4.2.2 (RFC 7766), the same time limit.
- Bounded: at most `max_pending` queries being forwarded (more are dropped, UDP, or
  the connection closed, TCP), at most `max_tcp` client connections (a new one over
  it is closed), a TCP client idle for `idle_timeout` is closed; messages are at most
  65,535 octets by their framing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gossamer.errors import UsageError
from gossamer.logs import event
from gossamer.proxy.routing.mesh_names import MeshNames
from gossamer.proxy.transport import dns_wire as wire

log = logging.getLogger(__name__)

FORWARD = "forward"
DROP = "drop"
DNS_PORT = 53


def decide(data: bytes, names: MeshNames, ttl: int) -> bytes | str:
    """The answer to send, FORWARD or DROP."""
    try:
        query = wire.parse_query(data)
    except wire.Malformed as exc:
        if not exc.answerable:
            return DROP
        return wire.error(data, wire.RCODE_FORMERR) or DROP
    if wire.opcode(query.flags) != wire.OPCODE_QUERY or query.qclass != wire.CLASS_IN:
        return FORWARD
    vip = names.lookup(query.name)
    if vip is None:
        return FORWARD
    return wire.answer(query, (socket.inet_aton(vip),), ttl)


def upstreams_from(text: str) -> list[tuple[str, int]]:
    """The `nameserver` lines of a resolv.conf (at most 3, as glibc reads them)."""
    found: list[tuple[str, int]] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver" and len(found) < 3:
            address = parts[1].split("%", 1)[0]
            try:
                socket.inet_pton(socket.AF_INET6 if ":" in address else socket.AF_INET, address)
            except OSError:
                continue
            found.append((address, DNS_PORT))
    return found


def parse_upstreams(text: str, flag: str = "--dns-upstream") -> list[tuple[str, int]]:
    """`--dns-upstream`: HOST[:PORT][,HOST[:PORT]...] (IPv4 addresses)."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        host, sep, port = part.rpartition(":")
        if not sep:
            host, port = part, str(DNS_PORT)
        try:
            socket.inet_aton(host)
        except OSError:
            raise UsageError(f"{flag}: {host!r} is not an IPv4 address") from None
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise UsageError(f"{flag}: {port!r} is not a port")
        out.append((host, int(port)))
    return out


def system_upstreams(path: Path = Path("/etc/resolv.conf")) -> list[tuple[str, int]]:
    """The resolvers of `path`; glibc's default 127.0.0.1 when it names none."""
    try:
        found = upstreams_from(path.read_text(errors="replace"))
    except OSError:
        found = []
    return found or [("127.0.0.1", DNS_PORT)]


@dataclass
class DnsStats:
    answered: int = 0
    forwarded: int = 0
    formerr: int = 0
    dropped: int = 0
    failed: int = 0  # forwarded without a reply from any upstream

    def as_dict(self) -> dict[str, int]:
        return {
            "answered": self.answered,
            "forwarded": self.forwarded,
            "formerr": self.formerr,
            "dropped": self.dropped,
            "failed": self.failed,
        }


class _Reply(asyncio.DatagramProtocol):
    def __init__(self, ident: int | None, done: asyncio.Future[bytes]) -> None:
        self.ident, self.done = ident, done

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not self.done.done() and wire.message_id(data) == self.ident:
            self.done.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(exc)


class DnsServer:
    def __init__(
        self,
        names: Callable[[], MeshNames],
        upstreams: Sequence[tuple[str, int]],
        *,
        ttl: int = 30,
        timeout: float = 5.0,
        max_pending: int = 256,
        max_tcp: int = 64,
        idle_timeout: float = 10.0,
    ) -> None:
        self.names = names
        self.upstreams = list(upstreams)
        self.ttl = ttl
        self.timeout = timeout
        self.max_pending = max_pending
        self.max_tcp = max_tcp
        self.idle_timeout = idle_timeout
        self.stats = DnsStats()
        self._pending = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.AbstractServer | None = None
        self._tcp_conns = 0

    # -- life cycle ----------------------------------------------------------------------
    async def start(self, address: str, port: int) -> int:
        """Bind UDP and TCP on the same port; returns it."""
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _UdpServer(self), local_addr=(address, port)
        )
        self._udp = transport
        bound = int(transport.get_extra_info("sockname")[1])
        try:
            self._tcp = await asyncio.start_server(
                self._tcp_client, address, bound, reuse_address=True, limit=2**16 + 2
            )
        except OSError:
            transport.close()
            raise
        event(log, logging.INFO, "dns listening", port=bound,
              upstreams=[f"{h}:{p}" for h, p in self.upstreams])  # fmt: skip
        return bound

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- the decision and forwarding -------------------------------------------------------
    def _decide(self, data: bytes) -> bytes | str:
        verdict = decide(data, self.names(), self.ttl)
        if verdict == DROP:
            self.stats.dropped += 1
        elif verdict == FORWARD:
            if self._pending >= self.max_pending:
                self.stats.dropped += 1
                return DROP
            self.stats.forwarded += 1
        elif isinstance(verdict, bytes) and verdict[3] & 0x0F == wire.RCODE_FORMERR:
            self.stats.formerr += 1
        else:
            self.stats.answered += 1
        return verdict

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def forward_udp(self, data: bytes) -> bytes | None:
        loop = asyncio.get_running_loop()
        each = self.timeout / max(1, len(self.upstreams))
        self._pending += 1
        try:
            for host, port in self.upstreams:
                done: asyncio.Future[bytes] = loop.create_future()
                family = socket.AF_INET6 if ":" in host else socket.AF_INET
                try:
                    transport, _ = await loop.create_datagram_endpoint(
                        lambda done=done: _Reply(wire.message_id(data), done),  # type: ignore[misc]
                        remote_addr=(host, port),
                        family=family,
                    )
                except OSError:
                    continue
                try:
                    transport.sendto(data)
                    async with asyncio.timeout(each):
                        return await done
                except (TimeoutError, OSError):
                    continue
                finally:
                    transport.close()
            self.stats.failed += 1
            return None
        finally:
            self._pending -= 1

    async def forward_tcp(self, data: bytes) -> bytes | None:
        each = self.timeout / max(1, len(self.upstreams))
        self._pending += 1
        try:
            for host, port in self.upstreams:
                writer = None
                try:
                    async with asyncio.timeout(each):
                        reader, writer = await asyncio.open_connection(host, port)
                        writer.write(struct.pack("!H", len(data)) + data)
                        (length,) = struct.unpack("!H", await reader.readexactly(2))
                        return await reader.readexactly(length)
                except (TimeoutError, OSError, asyncio.IncompleteReadError):
                    continue
                finally:
                    if writer is not None:
                        writer.close()
            self.stats.failed += 1
            return None
        finally:
            self._pending -= 1

    async def _udp_forward(self, data: bytes, client: Any) -> None:
        reply = await self.forward_udp(data)
        if reply is not None and self._udp is not None and not self._udp.is_closing():
            self._udp.sendto(reply, client)

    # -- TCP clients ----------------------------------------------------------------------
    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._tcp_conns >= self.max_tcp:
            writer.close()
            return
        self._tcp_conns += 1
        try:
            while True:
                async with asyncio.timeout(self.idle_timeout):
                    (length,) = struct.unpack("!H", await reader.readexactly(2))
                    data = await reader.readexactly(length)
                verdict = self._decide(data)
                if verdict == DROP:
                    return
                reply = await self.forward_tcp(data) if verdict == FORWARD else verdict
                if reply is None:
                    return
                assert isinstance(reply, bytes)
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (TimeoutError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._tcp_conns -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


class _UdpServer(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: Any = None  # a datagram transport (uvloop's is not a subclass)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        verdict = self.server._decide(data)
        if verdict == DROP:
            return
        if verdict == FORWARD:
            self.server._spawn(self.server._udp_forward(data, addr))
        elif isinstance(verdict, bytes) and self.transport is not None:
            self.transport.sendto(verdict, addr)
