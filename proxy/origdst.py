"""The original destination of a connection redirected by iptables (transparent mode).

After `iptables -t nat ... -j REDIRECT`, the accepted socket's local address is the
proxy's; netfilter keeps the address the client asked for, which
`getsockopt(SOL_IP, SO_ORIGINAL_DST)` returns as a `struct sockaddr_in` (family, port in
network order, IPv4 address); for IPv6, `getsockopt(SOL_IPV6, IP6T_SO_ORIGINAL_DST)`
returns a `struct sockaddr_in6`.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h
IP6T_SO_ORIGINAL_DST = 80  # linux/netfilter_ipv6/ip6_tables.h


def parse_sockaddr(raw: bytes) -> tuple[str, int] | None:
    """(address, port) of a sockaddr_in or sockaddr_in6, else None."""
    if len(raw) < 8:
        return None
    (family,) = struct.unpack_from("=H", raw, 0)
    (port,) = struct.unpack_from("!H", raw, 2)
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[4:8]), port
    if family == socket.AF_INET6 and len(raw) >= 24:
        return socket.inet_ntop(socket.AF_INET6, raw[8:24]), port
    return None


def original_dst(sock: Any) -> tuple[str, int] | None:
    """Where a redirected connection was going; None when it was not redirected."""
    if sock is None:
        return None
    try:
        family = sock.family
    except AttributeError:
        family = socket.AF_INET
    try:
        if family == socket.AF_INET6:
            raw = sock.getsockopt(socket.IPPROTO_IPV6, IP6T_SO_ORIGINAL_DST, 28)
        else:
            raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    except OSError:
        return None
    return parse_sockaddr(raw)
