"""DNS messages (RFC 1035): read a query's header and question, write our answers.

Pure and bounded: no I/O, no state; every input either parses or raises `Malformed`.
The sidecar's DNS listener (`proxy/listeners/dns.py`) answers only one kind of query
itself, a standard query with one question for a mesh name, and forwards everything
else byte for byte; so this module needs to read no more than that and to write only
answers to it.

Theory of operation:
- Header (RFC 1035 4.1.1): ID, flags (QR, OPCODE, AA, TC, RD, RA, Z/AD/CD, RCODE),
  QDCOUNT, ANCOUNT, NSCOUNT, ARCOUNT; 12 bytes, network order.
- Question (4.1.2): QNAME as labels (a length octet 1-63, then the octets), ended by a
  zero octet, at most 255 octets in all (3.1); QTYPE, QCLASS. A compression pointer
  (4.1.4: top bits 11) has nothing to point back to in a question and is refused, as
  are the reserved label types (01, 10: RFC 6891 retired extended labels).
- Names compare case-insensitively (RFC 4343); the label bytes are kept as sent and
  the answer repeats the question section verbatim (some resolvers check it, 0x20
  randomisation relies on it).
- An answer (4.1.3) names the question by a pointer to offset 12 (0xC00C), class IN,
  the TTL given, RDLENGTH 4, the IPv4 address. A mesh name asked for another type
  (AAAA included) gets NOERROR with no answer: NODATA (RFC 2308 2.2), so a resolver
  that asked A and AAAA uses the A record and does not fail the lookup.
- A message too short for a header is dropped; one that is a response (QR set) is
  dropped (answering it could start a loop); anything else we cannot read gets
  FORMERR with the query's ID and opcode, no question (RFC 1035 4.1.1 allows it).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

HEADER = struct.Struct("!HHHHHH")
HEADER_SIZE = HEADER.size  # 12
MAX_NAME = 255  # octets of a wire-format name (RFC 1035 3.1)
MAX_LABEL = 63

TYPE_A = 1
TYPE_AAAA = 28
CLASS_IN = 1

RCODE_NOERROR = 0
RCODE_FORMERR = 1
RCODE_NXDOMAIN = 3
RCODE_NOTIMP = 4

FLAG_QR = 0x8000
FLAG_AA = 0x0400
FLAG_TC = 0x0200
FLAG_RD = 0x0100
FLAG_RA = 0x0080
OPCODE_MASK = 0x7800
OPCODE_QUERY = 0


class Malformed(ValueError):
    """A message we cannot read; `answerable` says whether FORMERR may be sent back."""

    def __init__(self, reason: str, *, answerable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.answerable = answerable


@dataclass(frozen=True, slots=True)
class Query:
    """A standard query with exactly one question."""

    id: int
    flags: int
    name: str  # lower case, dot-separated, no trailing dot ("" for the root)
    qtype: int
    qclass: int
    question: bytes  # the question section as sent (name, type, class)

    @property
    def recursion_desired(self) -> bool:
        return bool(self.flags & FLAG_RD)


def message_id(data: bytes) -> int | None:
    """The ID of a message, or None when it is too short to have one."""
    if len(data) < 2:
        return None
    (ident,) = struct.unpack_from("!H", data, 0)
    return int(ident)


def read_name(data: bytes, offset: int) -> tuple[str, int]:
    """The name at `offset` (uncompressed) and the offset after it."""
    labels: list[str] = []
    size = 0
    while True:
        if offset >= len(data):
            raise Malformed("name runs past the message", answerable=True)
        length = data[offset]
        if length & 0xC0:
            raise Malformed("compressed or extended label in a question", answerable=True)
        offset += 1
        size += length + 1
        if size > MAX_NAME:
            raise Malformed("name longer than 255 octets", answerable=True)
        if length == 0:
            return ".".join(labels), offset
        if offset + length > len(data):
            raise Malformed("label runs past the message", answerable=True)
        label = data[offset : offset + length].decode("latin-1").lower()
        labels.append(label.replace(".", "\\."))  # a dot inside a label is not a separator
        offset += length


def parse_query(data: bytes) -> Query:
    """The query in `data`, or `Malformed` (see the module docstring for which)."""
    if len(data) < HEADER_SIZE:
        raise Malformed("shorter than a DNS header", answerable=False)
    ident, flags, qdcount, _an, _ns, _ar = HEADER.unpack_from(data, 0)
    if flags & FLAG_QR:
        raise Malformed("a response, not a query", answerable=False)
    if qdcount != 1:
        raise Malformed(f"{qdcount} questions (one expected)", answerable=True)
    name, offset = read_name(data, HEADER_SIZE)
    if offset + 4 > len(data):
        raise Malformed("question without type and class", answerable=True)
    qtype, qclass = struct.unpack_from("!HH", data, offset)
    return Query(ident, flags, name, qtype, qclass, bytes(data[HEADER_SIZE : offset + 4]))


def opcode(flags: int) -> int:
    return (flags & OPCODE_MASK) >> 11


def _response_flags(query_flags: int, rcode: int, *, authoritative: bool) -> int:
    flags = FLAG_QR | (query_flags & (OPCODE_MASK | FLAG_RD)) | FLAG_RA | rcode
    return flags | FLAG_AA if authoritative else flags


def answer(query: Query, addresses: tuple[bytes, ...], ttl: int) -> bytes:
    """An authoritative answer to `query`: A records for `addresses` (4 octets each)
    when it asked for A, else NODATA."""
    records = addresses if query.qtype == TYPE_A else ()
    flags = _response_flags(query.flags, RCODE_NOERROR, authoritative=True)
    parts = [HEADER.pack(query.id, flags, 1, len(records), 0, 0), query.question]
    for address in records:
        if len(address) != 4:
            raise ValueError("an A record holds 4 octets")
        parts.append(struct.pack("!HHHIH", 0xC00C, TYPE_A, CLASS_IN, ttl, 4) + address)
    return b"".join(parts)


def error(data: bytes, rcode: int) -> bytes | None:
    """A header-only response with `rcode` to the message in `data` (ID and opcode
    kept), or None when it has no full header to answer."""
    if len(data) < HEADER_SIZE:
        return None
    ident, flags = struct.unpack_from("!HH", data, 0)
    flags = _response_flags(flags, rcode, authoritative=False)
    return HEADER.pack(ident, flags, 0, 0, 0, 0)


@dataclass(frozen=True, slots=True)
class Response:
    """What a test or the fuzzer reads back from an answer."""

    id: int
    flags: int
    name: str
    qtype: int
    addresses: tuple[bytes, ...]

    @property
    def rcode(self) -> int:
        return self.flags & 0x000F


def parse_response(data: bytes) -> Response:
    """Read back an answer as `answer` or `error` write them (A records named by a
    pointer to the question). For tests and the fuzzer."""
    if len(data) < HEADER_SIZE:
        raise Malformed("shorter than a DNS header", answerable=False)
    ident, flags, qdcount, ancount, _ns, _ar = HEADER.unpack_from(data, 0)
    name, qtype, offset = "", 0, HEADER_SIZE
    if qdcount:
        name, offset = read_name(data, HEADER_SIZE)
        if offset + 4 > len(data):
            raise Malformed("question without type and class", answerable=False)
        (qtype,) = struct.unpack_from("!H", data, offset)
        offset += 4
    addresses = []
    for _ in range(ancount):
        if offset + 12 > len(data):
            raise Malformed("truncated record", answerable=False)
        _ptr, rtype, _cls, _ttl, length = struct.unpack_from("!HHHIH", data, offset)
        offset += 12
        if offset + length > len(data):
            raise Malformed("truncated record data", answerable=False)
        if rtype == TYPE_A and length == 4:
            addresses.append(bytes(data[offset : offset + 4]))
        offset += length
    return Response(ident, flags, name, qtype, tuple(addresses))


def build_query(name: str, qtype: int = TYPE_A, ident: int = 0x1234) -> bytes:
    """A standard recursive query for `name` (tests, fuzz seeds)."""
    labels = [label.encode() for label in name.strip(".").split(".") if label]
    qname = b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"
    return HEADER.pack(ident, FLAG_RD, 1, 0, 0, 0) + qname + struct.pack("!HH", qtype, CLASS_IN)
