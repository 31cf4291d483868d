"""The server name of a TLS ClientHello, read from a connection's first bytes (pure).

A node gateway routes a connection by the SNI its caller sent, without terminating TLS
(docs/architecture.md, "Several nodes"), so all it reads is the start of the TLS
stream: `HelloAssembler.feed(chunk)` (or `parse_client_hello(data)` for all the bytes
at once) takes the bytes received so far and returns

- `None` while the ClientHello is incomplete (read more, within the limits),
- a `ClientHello` with `server_name` (None when the hello carries no SNI) and the
  ALPN protocols offered, once the whole handshake message has arrived,
- or raises `HelloError` with a `reason` (a metric label): `not_tls` (the first record
  is not a TLS handshake record), `too_large` (the hello, or what would hold it, is over
  `max_size`), `malformed` (a length that overruns its container, a missing field, a
  server name that is not an ASCII host name, a message that is not a ClientHello).

Theory of operation (RFC 8446 §4.1.2, §5.1; RFC 6066 §3; RFC 7301 §3.1):

    record   = type(1)=22 legacy_version(2)=0x03xx length(2)<=2^14 fragment
    message  = msg_type(1)=1 length(3) ClientHello   (may span several records)
    ClientHello = legacy_version(2) random(32) session_id<0..32>
                  cipher_suites<2..2^16-2> compression_methods<1..2^8-1>
                  extensions<8..2^16-1>       (absent in very old hellos: no SNI)
    server_name (type 0) = list<1..2^16-1> of {name_type(1)=0 host_name<1..2^16-1>}
    ALPN (type 16)       = list<2..2^16-1> of protocol<1..2^8-1>

Records other than handshake records before the hello are refused (`not_tls`), as is an
SSLv2-compatible hello (no SNI possible). Every length is checked against what holds
it before it is used, so no input makes the parser read out of bounds or loop; the
work is linear in the bytes given, which `max_size` bounds.
"""

from __future__ import annotations

from dataclasses import dataclass

HANDSHAKE = 22
CLIENT_HELLO = 1
RECORD_HEADER = 5
MAX_RECORD = 1 << 14  # TLSPlaintext.length's bound (RFC 8446 §5.1)
MAX_HELLO = 64 * 1024  # bytes the gateway reads at most before the hello is complete
EXT_SERVER_NAME = 0
EXT_ALPN = 16
HOST_NAME = 0
MAX_NAME = 255


class HelloError(Exception):
    """The connection does not start with a usable ClientHello; `reason` says why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ClientHello:
    server_name: str | None
    alpn: tuple[str, ...] = ()
    size: int = 0  # bytes of the TLS stream the hello took (records included)


class _Reader:
    """Bounds-checked reads from one buffer; any overrun is `malformed`."""

    __slots__ = ("data", "end", "pos", "what")

    def __init__(self, data: bytes | memoryview, what: str) -> None:
        self.data = memoryview(data)
        self.pos = 0
        self.end = len(data)
        self.what = what

    def left(self) -> int:
        return self.end - self.pos

    def take(self, n: int, field: str) -> memoryview:
        if n < 0 or n > self.left():
            raise HelloError("malformed", f"{self.what}: {field} overruns its container")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def uint(self, size: int, field: str) -> int:
        return int.from_bytes(self.take(size, field), "big")

    def vector(self, len_size: int, field: str, minimum: int = 0) -> _Reader:
        n = self.uint(len_size, f"{field} length")
        if n < minimum:
            raise HelloError("malformed", f"{self.what}: {field} shorter than {minimum}")
        return _Reader(self.take(n, field), field)


class HelloAssembler:
    """Collects a connection's first bytes until they hold the whole ClientHello.

    Incremental: each byte is looked at once however the bytes are cut (a record header
    is read when complete, a record's fragment is copied when complete), so a peer that
    sends its hello a byte at a time costs linear work, not quadratic."""

    def __init__(self, max_size: int = MAX_HELLO) -> None:
        self.max_size = max_size
        self.data = bytearray()  # everything received, for the relay to forward
        self.pos = 0  # where the next record header starts
        self.message = bytearray()  # handshake fragments so far

    def feed(self, chunk: bytes | bytearray) -> ClientHello | None:
        """Add bytes; the hello once complete, None while not; HelloError if unusable."""
        self.data += chunk
        data, max_size = self.data, self.max_size
        while True:
            pos = self.pos
            if len(data) - pos < RECORD_HEADER:
                if pos == 0 and data and data[0] != HANDSHAKE:
                    raise HelloError("not_tls", f"first byte {data[0]:#04x} is no handshake record")
                return None
            kind, major, length = data[pos], data[pos + 1], int.from_bytes(data[pos + 3 : pos + 5])
            if kind != HANDSHAKE or major != 3:
                raise HelloError("not_tls", f"record type {kind} version {major}.{data[pos + 2]}")
            if length == 0 or length > MAX_RECORD:
                raise HelloError("malformed", f"record length {length}")
            if pos + RECORD_HEADER + length > max_size:
                raise HelloError("too_large", f"ClientHello over {max_size} bytes")
            if len(data) - pos - RECORD_HEADER < length:
                return None
            self.message += data[pos + RECORD_HEADER : pos + RECORD_HEADER + length]
            self.pos = pos + RECORD_HEADER + length
            out = self.message
            if len(out) >= 4:
                if out[0] != CLIENT_HELLO:
                    raise HelloError("malformed", f"handshake type {out[0]}, not ClientHello")
                need = 4 + int.from_bytes(out[1:4])
                if need > max_size:
                    raise HelloError("too_large", f"ClientHello of {need} bytes")
                if len(out) >= need:
                    return _parse(bytes(out[:need]), self.pos)


def _host_name(raw: memoryview) -> str:
    name = bytes(raw)
    if not name or len(name) > MAX_NAME:
        raise HelloError("malformed", f"server name of {len(name)} bytes")
    if any(b <= 0x20 or b >= 0x7F for b in name):
        raise HelloError("malformed", "server name is not an ASCII host name")
    return name.decode("ascii").rstrip(".").lower()


def _server_name(ext: _Reader) -> str | None:
    names = ext.vector(2, "server_name_list", 1)
    found = None
    while names.left():
        kind = names.uint(1, "name_type")
        value = names.vector(2, "host_name", 1)
        if kind == HOST_NAME and found is None:
            found = _host_name(value.take(value.left(), "host_name"))
    if ext.left():
        raise HelloError("malformed", "bytes after the server name list")
    return found


def _alpn(ext: _Reader) -> tuple[str, ...]:
    protocols = ext.vector(2, "protocol_name_list", 2)
    out = []
    while protocols.left():
        name = protocols.vector(1, "protocol_name", 1)
        out.append(bytes(name.take(name.left(), "protocol_name")).decode("latin-1"))
    return tuple(out)


def parse_client_hello(data: bytes | bytearray, max_size: int = MAX_HELLO) -> ClientHello | None:
    """See the module docstring (all the bytes at once; `HelloAssembler` takes them as
    they come)."""
    return HelloAssembler(max_size).feed(data)


def _parse(message: bytes, consumed: int) -> ClientHello:
    """The fields of a whole ClientHello handshake message."""
    body = _Reader(memoryview(message)[4:], "ClientHello")
    body.take(2, "legacy_version")
    body.take(32, "random")
    session = body.vector(1, "legacy_session_id")
    if session.left() > 32:
        raise HelloError("malformed", "legacy_session_id longer than 32 bytes")
    suites = body.vector(2, "cipher_suites", 2)
    if suites.left() % 2:
        raise HelloError("malformed", "cipher_suites of an odd length")
    body.vector(1, "legacy_compression_methods", 1)
    if not body.left():
        return ClientHello(None, (), consumed)  # no extensions at all
    extensions = body.vector(2, "extensions")
    if body.left():
        raise HelloError("malformed", "bytes after the extensions")
    server_name: str | None = None
    alpn: tuple[str, ...] = ()
    seen: set[int] = set()
    while extensions.left():
        kind = extensions.uint(2, "extension type")
        ext = extensions.vector(2, f"extension {kind}")
        if kind in seen:
            raise HelloError("malformed", f"extension {kind} twice")  # RFC 8446 §4.2
        seen.add(kind)
        if kind == EXT_SERVER_NAME:
            server_name = _server_name(ext)
        elif kind == EXT_ALPN:
            alpn = _alpn(ext)
    return ClientHello(server_name, alpn, consumed)
