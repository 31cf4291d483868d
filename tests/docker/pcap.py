"""Reading a tcpdump capture (classic pcap, Ethernet) far enough to get TCP payloads.

Enough for the container tests to show what crossed a bridge: IPv4 only, no reassembly.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import NamedTuple

_ETHERTYPE_IPV4 = 0x0800
_PROTO_TCP = 6


class Segment(NamedTuple):
    """One TCP segment with data."""

    src: str
    sport: int
    dst: str
    dport: int
    payload: bytes


def tcp_segments(data: bytes) -> list[Segment]:
    """The TCP segments that carry data, in capture order."""
    if len(data) < 24:
        return []
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise ValueError("not a pcap file")
    (linktype,) = struct.unpack(endian + "I", data[20:24])
    if linktype != 1:
        raise ValueError(f"link type {linktype}, expected Ethernet (1)")
    segments: list[Segment] = []
    offset = 24
    while offset + 16 <= len(data):
        _sec, _usec, caplen, _origlen = struct.unpack(endian + "IIII", data[offset : offset + 16])
        frame = data[offset + 16 : offset + 16 + caplen]
        offset += 16 + caplen
        segment = _segment(frame)
        if segment is not None and segment.payload:
            segments.append(segment)
    return segments


def _segment(frame: bytes) -> Segment | None:
    if len(frame) < 14 or struct.unpack("!H", frame[12:14])[0] != _ETHERTYPE_IPV4:
        return None
    ip = frame[14:]
    if len(ip) < 20 or ip[9] != _PROTO_TCP:
        return None
    ihl = (ip[0] & 0x0F) * 4
    total = struct.unpack("!H", ip[2:4])[0]
    tcp = ip[ihl:total]
    if len(tcp) < 20:
        return None
    sport, dport = struct.unpack("!HH", tcp[:4])
    src, dst = (str(ipaddress.IPv4Address(a)) for a in (ip[12:16], ip[16:20]))
    return Segment(src, sport, dst, dport, tcp[(tcp[12] >> 4) * 4 :])
