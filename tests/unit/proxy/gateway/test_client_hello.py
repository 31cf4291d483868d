"""The ClientHello parser: real hellos from OpenSSL, every prefix, edge cases, fuzzing."""

from __future__ import annotations

import ssl
import struct
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gossamer.proxy.gateway.client_hello import (
    MAX_HELLO,
    ClientHello,
    HelloAssembler,
    HelloError,
    parse_client_hello,
)

SNI = "outbound_.8080_._.catalog.default.svc.gossamer.local"


def openssl_hello(server_name: str | None = SNI, alpn: list[str] | None = None) -> bytes:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    conn = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        conn.do_handshake()
    return outgoing.read()


def vec(n: int, data: bytes) -> bytes:
    return len(data).to_bytes(n, "big") + data


def hello(extensions: bytes | None, *, suites: bytes = b"\x13\x01", session: bytes = b"") -> bytes:
    body = b"\x03\x03" + bytes(32) + vec(1, session) + vec(2, suites) + vec(1, b"\x00")
    if extensions is not None:
        body += vec(2, extensions)
    return b"\x01" + vec(3, body)


def records(message: bytes, size: int = 16384) -> bytes:
    out = b""
    for i in range(0, len(message), size):
        chunk = message[i : i + size]
        out += b"\x16\x03\x01" + struct.pack("!H", len(chunk)) + chunk
    return out


def sni_ext(*names: tuple[int, bytes]) -> bytes:
    entries = b"".join(bytes([kind]) + vec(2, name) for kind, name in names)
    return b"\x00\x00" + vec(2, vec(2, entries))


def test_openssl_hellos_give_their_server_name_and_alpn():
    data = openssl_hello(alpn=["h2", "http/1.1"])
    found = parse_client_hello(data)
    assert found == ClientHello(SNI, ("h2", "http/1.1"), len(data))
    assert parse_client_hello(openssl_hello(None)) == ClientHello(
        None, (), len(openssl_hello(None))
    )


def test_every_prefix_asks_for_more_and_trailing_bytes_are_left():
    data = openssl_hello()
    for cut in range(len(data)):
        assert parse_client_hello(data[:cut]) is None, cut
    found = parse_client_hello(data + b"\x17\x03\x03\x00\x05hello")
    assert found is not None and found.size == len(data)


def test_a_hello_split_over_records():
    message = hello(sni_ext((0, b"a.example")))
    data = records(message, size=7)
    assert parse_client_hello(data) == ClientHello("a.example", (), len(data))
    for cut in range(len(data)):
        assert parse_client_hello(data[:cut]) is None


def test_names_are_lowercased_and_the_first_host_name_wins():
    data = records(hello(sni_ext((1, b"other"), (0, b"A.Example."), (0, b"b.example"))))
    found = parse_client_hello(data)
    assert found is not None and found.server_name == "a.example"


def test_no_extensions_means_no_name():
    found = parse_client_hello(records(hello(None)))
    assert found is not None and found.server_name is None


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", "not_tls"),
        (b"G", "not_tls"),
        (b"\x17\x03\x03\x00\x10" + bytes(16), "not_tls"),  # application data first
        (b"\x16\x02\x00\x00\x10" + bytes(16), "not_tls"),  # SSL 2/3-era version byte
        (b"\x16\x03\x01\x00\x00", "malformed"),  # empty record
        (b"\x16\x03\x01\x40\x01", "malformed"),  # record over 2^14
        (records(b"\x02" + vec(3, bytes(40))), "malformed"),  # ServerHello
        (records(hello(sni_ext((0, b"")))), "malformed"),  # empty name
        (records(hello(sni_ext((0, b"a b")))), "malformed"),  # space
        (records(hello(sni_ext((0, "é".encode())))), "malformed"),  # not ASCII
        (records(hello(sni_ext((0, b"a" * 256)))), "malformed"),
        (records(hello(b"\x00\x00\x00\x02\x00\x00")), "malformed"),  # empty name list
        (records(hello(sni_ext((0, b"a")) + sni_ext((0, b"b")))), "malformed"),  # twice
        (records(hello(b"\x00\x00\x00\x09" + b"\x00")), "malformed"),  # length overruns
        (records(hello(b"", suites=b"\x13")), "malformed"),  # odd cipher suites
        (records(hello(b"", suites=b"")), "malformed"),
        (records(hello(b"", session=bytes(33))), "malformed"),
        (records(b"\x01\x00\x00\x05" + b"\x03\x03\x00\x00\x00"), "malformed"),  # truncated body
        (records(b"\x01" + (MAX_HELLO).to_bytes(3, "big") + bytes(100)), "too_large"),
    ],
)
def test_refusals(data, reason):
    with pytest.raises(HelloError) as caught:
        parse_client_hello(data)
    assert caught.value.reason == reason


def test_records_past_the_size_limit_are_too_large():
    data = records(hello(sni_ext((0, b"a.example")) + b"\xff\x00" + vec(2, bytes(3000))))
    with pytest.raises(HelloError) as caught:
        parse_client_hello(data, max_size=1024)
    assert caught.value.reason == "too_large"
    assert parse_client_hello(data[:4], max_size=1024) is None  # no record header yet
    with pytest.raises(HelloError):  # the record header alone says it will not fit
        parse_client_hello(data[:5], max_size=1024)


def test_an_empty_extensions_block_parses():
    found = parse_client_hello(records(hello(b"")))
    assert found is not None and found.server_name is None


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_crash(data):
    for prefix in (b"", b"\x16\x03\x01", b"\x16\x03\x01\x01\x00\x01\x00\x00\xfc"):
        try:
            found = parse_client_hello(prefix + data)
        except HelloError as exc:
            assert exc.reason in {"not_tls", "malformed", "too_large"}
        else:
            assert found is None or isinstance(found, ClientHello)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 255))
def test_mutated_real_hellos_never_crash(position, value):
    data = bytearray(openssl_hello(alpn=["h2"]))
    data[position % len(data)] = value
    try:
        parse_client_hello(bytes(data))
    except HelloError:
        pass


def test_fed_a_byte_at_a_time_in_linear_time():
    """A peer dribbling a large hello in 1-byte records, 1 byte per read, costs linear
    work (each byte is looked at once), not a re-parse per read."""
    message = hello(sni_ext((0, b"a.example")) + b"\xff\x00" + vec(2, bytes(20_000)))
    data = records(message, size=1)  # 6 bytes of record per byte of message
    assembler = HelloAssembler(max_size=len(data))
    started = time.perf_counter()
    found = None
    for i in range(len(data)):
        found = assembler.feed(data[i : i + 1])
        if found is not None:
            assert i == len(data) - 1
    assert found == ClientHello("a.example", (), len(data))
    assert time.perf_counter() - started < 5  # quadratic would be minutes
