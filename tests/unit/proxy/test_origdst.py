"""Parsing the sockaddr that SO_ORIGINAL_DST returns."""

from __future__ import annotations

import socket
import struct

from gossamer.proxy.origdst import original_dst, parse_sockaddr


def test_ipv4_sockaddr():
    raw = (
        struct.pack("=H", socket.AF_INET)
        + struct.pack("!H", 8080)
        + socket.inet_aton("10.1.2.3")
        + b"\0" * 8
    )
    assert parse_sockaddr(raw) == ("10.1.2.3", 8080)


def test_ipv6_sockaddr():
    raw = (
        struct.pack("=H", socket.AF_INET6)
        + struct.pack("!H", 443)
        + b"\0" * 4
        + socket.inet_pton(socket.AF_INET6, "fd00::7")
        + b"\0" * 4
    )
    assert parse_sockaddr(raw) == ("fd00::7", 443)


def test_garbage_and_unredirected_sockets():
    assert parse_sockaddr(b"\x01") is None
    assert parse_sockaddr(struct.pack("=H", 99) + b"\0" * 14) is None
    assert original_dst(None) is None
    with socket.socket() as s:  # not redirected: the kernel has no original destination
        s.bind(("127.0.0.1", 0))
        assert original_dst(s) is None
