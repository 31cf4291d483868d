"""The IPv4 networks this sidecar's namespace is on, and which of an instance's
addresses to connect to from here.

A container on several Compose networks has one address on each; its sidecar registers
them all (the control plane sees only the one it was reached from) and the control
plane sends the others as the endpoint's EDS `additional_addresses`. A caller that shares
only one of those networks must connect to the address on that network:
`connect_address` picks it, with no I/O. `local_networks` reads the interfaces (ioctl
SIOCGIFADDR / SIOCGIFNETMASK on each interface, primary IPv4 address only).

Only the primary address is verified by the control plane (it is the one the sidecar
connected from); the others are the instance's own claims. The address picked here is
only where to connect: when it is a claimed one, the endpoint keeps the verified one as
`Endpoint.primary`, and in transparent mode only that one names the cluster for an
original destination, while a claimed one is pinned to itself
(`proxy/routing/router.py` `destination_index`).
"""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct
from collections.abc import Sequence

SIOCGIFADDR = 0x8915
SIOCGIFNETMASK = 0x891B
_IFNAMSIZ = 16


def local_networks() -> tuple[ipaddress.IPv4Interface, ...]:
    """Every non-loopback IPv4 address of this network namespace, with its prefix."""
    found: list[ipaddress.IPv4Interface] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _index, name in socket.if_nameindex():
            request = struct.pack("256s", name.encode()[: _IFNAMSIZ - 1])
            try:
                addr = fcntl.ioctl(sock.fileno(), SIOCGIFADDR, request)[20:24]
                mask = fcntl.ioctl(sock.fileno(), SIOCGIFNETMASK, request)[20:24]
            except OSError:
                continue  # no IPv4 address on this interface
            iface = ipaddress.IPv4Interface(f"{socket.inet_ntoa(addr)}/{socket.inet_ntoa(mask)}")
            if not iface.ip.is_loopback:
                found.append(iface)
    return tuple(found)


def local_addresses() -> list[str]:
    """The addresses of `local_networks`, as strings (what a sidecar registers)."""
    return [str(iface.ip) for iface in local_networks()]


def _on(address: str, networks: Sequence[ipaddress.IPv4Interface]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False  # a host name: not ours to judge
    return ip.is_loopback or any(ip in iface.network for iface in networks)


def connect_address(
    primary: str, others: Sequence[str], networks: Sequence[ipaddress.IPv4Interface]
) -> str:
    """The address to reach an instance at: its primary one unless that is on none of
    our networks and another of its addresses is."""
    if not others or not networks or _on(primary, networks):
        return primary
    return next((a for a in others if _on(a, networks)), primary)
