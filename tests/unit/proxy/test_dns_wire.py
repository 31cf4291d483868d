"""The DNS codec (proxy/transport/dns_wire.py): queries read, answers written, and any
input either parses or raises Malformed."""

from __future__ import annotations

import socket
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gossamer.proxy.transport import dns_wire as wire


def test_a_query_reads_back_with_its_question_verbatim():
    raw = wire.build_query("Catalog.Default.", ident=0xBEEF)
    query = wire.parse_query(raw)
    assert (query.id, query.name, query.qtype, query.qclass) == (
        0xBEEF, "catalog.default", wire.TYPE_A, wire.CLASS_IN,
    )  # fmt: skip
    assert query.recursion_desired
    assert query.question == raw[12:]  # case kept as sent (0x20 randomisation)
    assert b"Catalog" in query.question


def test_answer_has_one_a_record_pointing_at_the_question():
    query = wire.parse_query(wire.build_query("catalog", ident=7))
    data = wire.answer(query, (socket.inet_aton("240.240.1.2"),), ttl=30)
    ident, flags, qd, an, ns, ar = struct.unpack_from("!6H", data, 0)
    assert (ident, qd, an, ns, ar) == (7, 1, 1, 0, 0)
    assert flags & wire.FLAG_QR and flags & wire.FLAG_AA and flags & wire.FLAG_RD
    assert flags & 0xF == wire.RCODE_NOERROR
    record = data[12 + len(query.question) :]
    assert record == struct.pack("!HHHIH", 0xC00C, 1, 1, 30, 4) + bytes([240, 240, 1, 2])
    back = wire.parse_response(data)
    assert back.addresses == (bytes([240, 240, 1, 2]),) and back.name == "catalog"
    # the system's resolver library agrees (a record glibc would parse)
    assert socket.inet_ntoa(back.addresses[0]) == "240.240.1.2"


def test_aaaa_and_other_types_get_nodata():
    for qtype in (wire.TYPE_AAAA, 15, 16, 255):
        query = wire.parse_query(wire.build_query("catalog", qtype=qtype))
        back = wire.parse_response(wire.answer(query, (b"\xf0\xf0\x00\x01",), ttl=30))
        assert back.rcode == wire.RCODE_NOERROR and back.addresses == () and back.qtype == qtype


@pytest.mark.parametrize(
    ("data", "answerable"),
    [
        (b"", False),
        (b"\x12\x34\x01", False),  # shorter than a header
        (b"\x12\x34\x81\x80" + b"\x00\x01" + b"\x00" * 6 + b"\x00\x00\x01\x00\x01", False),  # QR
        (b"\x12\x34\x01\x00" + b"\x00\x00" + b"\x00" * 6, True),  # no question
        (b"\x12\x34\x01\x00" + b"\x00\x02" + b"\x00" * 6 + b"\x00\x00\x01\x00\x01" * 2, True),
        (b"\x12\x34\x01\x00\x00\x01" + b"\x00" * 6 + b"\x07catalog", True),  # name unended
        (b"\x12\x34\x01\x00\x00\x01" + b"\x00" * 6 + b"\x07catalog\x00\x00", True),  # no class
        (b"\x12\x34\x01\x00\x00\x01" + b"\x00" * 6 + b"\xc0\x0c\x00\x01\x00\x01", True),  # pointer
        (b"\x12\x34\x01\x00\x00\x01" + b"\x00" * 6 + b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01",
         True),  # label type 01 (64 > 63)
    ],
)  # fmt: skip
def test_malformed_queries(data: bytes, answerable: bool):
    with pytest.raises(wire.Malformed) as caught:
        wire.parse_query(data)
    assert caught.value.answerable is answerable


def test_names_longer_than_255_octets_are_refused():
    name = ".".join(["a" * 63] * 4)  # 4 * 64 + 1 = 257 octets
    with pytest.raises(wire.Malformed, match="255"):
        wire.parse_query(wire.build_query(name))
    ok = ".".join(["a" * 63] * 3 + ["b" * 61])  # 255 octets
    assert wire.parse_query(wire.build_query(ok)).name == ok


def test_a_dot_inside_a_label_is_not_a_separator():
    raw = wire.HEADER.pack(1, 0x0100, 1, 0, 0, 0) + b"\x0bcatalog.def\x00\x00\x01\x00\x01"
    assert wire.parse_query(raw).name != "catalog.def"


def test_formerr_keeps_the_id_and_opcode():
    data = wire.error(b"\xab\xcd\x29\x00" + b"\x00" * 8, wire.RCODE_FORMERR)
    assert data is not None
    ident, flags = struct.unpack_from("!HH", data, 0)
    assert ident == 0xABCD and flags & 0xF == wire.RCODE_FORMERR and flags & wire.FLAG_QR
    assert wire.opcode(flags) == 5
    assert wire.error(b"\x00" * 11, wire.RCODE_FORMERR) is None


@given(st.binary(max_size=600))
def test_any_bytes_parse_or_raise_malformed(data: bytes):
    try:
        query = wire.parse_query(data)
    except wire.Malformed:
        return
    assert len(query.name) <= 255 * 2  # escaped dots at most double it
    reply = wire.answer(query, (b"\x01\x02\x03\x04",), ttl=5)
    assert wire.parse_response(reply).id == query.id


labels = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=63)


@given(st.lists(labels, min_size=1, max_size=3), st.integers(0, 0xFFFF), st.sampled_from([1, 28]))
def test_built_queries_round_trip(parts: list[str], ident: int, qtype: int):
    name = ".".join(parts)
    query = wire.parse_query(wire.build_query(name, qtype=qtype, ident=ident))
    assert (query.name, query.id, query.qtype) == (name, ident, qtype)
