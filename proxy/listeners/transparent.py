"""Transparent mode: iptables REDIRECT rules, and the original destination after them.

Rules (nat table), in our own chains so removal is exact:
- PREROUTING -> GOSSAMER_INBOUND: TCP arriving for the app is redirected to the
  inbound port; the metrics port (Prometheus scrapes it from outside), the inbound
  port itself and excluded ports are not. The admin port is not exempt: it listens on
  127.0.0.1, and a connection from outside to it lands on the inbound port (mutual
  TLS), even when someone binds it to every interface.
- OUTPUT -> GOSSAMER_OUTPUT: TCP the app opens is redirected to the outbound port,
  except the proxy's own traffic (`-m owner --uid-owner <proxy uid>`: what the sidecar
  sends leaves unchanged, so nothing loops), loopback traffic, and excluded ports.
- With `dns_port`: OUTPUT -> GOSSAMER_DNS, inserted first in OUTPUT: UDP and TCP to
  port 53 of the resolvers the app uses (`dns_servers`, /etc/resolv.conf's) are
  redirected to the sidecar's DNS (`listeners/dns.py`), except the proxy's own (its
  forwarded queries). Only those, as Istio does by default: Docker's embedded DNS
  sends its own queries for names outside the containers (to the host's resolvers)
  from inside the container's namespace, as root; redirecting them too would send
  them back to the sidecar, which forwards to Docker again, in a loop. First, because a Compose container's nat OUTPUT already
  holds Docker's jump to DOCKER_OUTPUT, which DNATs 127.0.0.11:53 to the embedded DNS's
  real port: a later rule would never see the app's queries; and before our own
  GOSSAMER_OUTPUT, whose loopback RETURNs would let them pass. The sidecar's queries
  RETURN here and meet Docker's DNAT as before.
IPv4 only (ip6tables rules are not installed).

After `-j REDIRECT`, the accepted socket's local address is the proxy's; netfilter keeps the address the client asked for, which
`getsockopt(SOL_IP, SO_ORIGINAL_DST)` returns as a `struct sockaddr_in` (family, port in
network order, IPv4 address); for IPv6, `getsockopt(SOL_IPV6, IP6T_SO_ORIGINAL_DST)`
returns a `struct sockaddr_in6`.
"""

from __future__ import annotations

import socket
import struct
import subprocess
from dataclasses import dataclass
from typing import Any

from gossamer.errors import GossamerError

INBOUND_CHAIN = "GOSSAMER_INBOUND"
OUTPUT_CHAIN = "GOSSAMER_OUTPUT"
DNS_CHAIN = "GOSSAMER_DNS"


@dataclass(frozen=True)
class InterceptSpec:
    proxy_uid: int
    inbound_port: int = 15006
    outbound_port: int = 15001
    metrics_port: int = 15090  # 0: no metrics port to exempt
    exclude_inbound_ports: tuple[int, ...] = ()
    exclude_outbound_ports: tuple[int, ...] = ()
    intercept_inbound: bool = True
    dns_port: int = 0  # 0: the app's DNS is not redirected
    dns_servers: tuple[str, ...] = ()  # IPv4 resolvers whose port 53 is redirected


def install_commands(spec: InterceptSpec) -> list[list[str]]:
    nat = ["iptables", "-w", "-t", "nat"]
    cmds: list[list[str]] = []
    if spec.intercept_inbound:
        cmds.append([*nat, "-N", INBOUND_CHAIN])
        skip = (spec.metrics_port, spec.inbound_port, *spec.exclude_inbound_ports)
        for port in dict.fromkeys(p for p in skip if p):
            cmds.append(
                [*nat, "-A", INBOUND_CHAIN, "-p", "tcp", "--dport", str(port), "-j", "RETURN"]
            )
        cmds.append(
            [
                *nat,
                "-A",
                INBOUND_CHAIN,
                "-p",
                "tcp",
                "-j",
                "REDIRECT",
                "--to-ports",
                str(spec.inbound_port),
            ]
        )
        cmds.append([*nat, "-A", "PREROUTING", "-p", "tcp", "-j", INBOUND_CHAIN])
    cmds.append([*nat, "-N", OUTPUT_CHAIN])
    cmds.append(
        [
            *nat,
            "-A",
            OUTPUT_CHAIN,
            "-m",
            "owner",
            "--uid-owner",
            str(spec.proxy_uid),
            "-j",
            "RETURN",
        ]
    )
    cmds.append([*nat, "-A", OUTPUT_CHAIN, "-o", "lo", "-j", "RETURN"])
    cmds.append([*nat, "-A", OUTPUT_CHAIN, "-d", "127.0.0.0/8", "-j", "RETURN"])
    for port in dict.fromkeys(spec.exclude_outbound_ports):
        cmds.append([*nat, "-A", OUTPUT_CHAIN, "-p", "tcp", "--dport", str(port), "-j", "RETURN"])
    cmds.append(
        [
            *nat,
            "-A",
            OUTPUT_CHAIN,
            "-p",
            "tcp",
            "-j",
            "REDIRECT",
            "--to-ports",
            str(spec.outbound_port),
        ]
    )
    cmds.append([*nat, "-A", "OUTPUT", "-p", "tcp", "-j", OUTPUT_CHAIN])
    if spec.dns_port:
        cmds += dns_commands(spec)
    return cmds


def dns_commands(spec: InterceptSpec) -> list[list[str]]:
    nat = ["iptables", "-w", "-t", "nat"]
    owner = ["-m", "owner", "--uid-owner", str(spec.proxy_uid), "-j", "RETURN"]
    cmds = [[*nat, "-N", DNS_CHAIN], [*nat, "-A", DNS_CHAIN, *owner]]
    for server in dict.fromkeys(spec.dns_servers):
        for proto in ("udp", "tcp"):
            cmds.append(
                [*nat, "-A", DNS_CHAIN, "-d", f"{server}/32", "-p", proto, "--dport", "53",
                 "-j", "REDIRECT", "--to-ports", str(spec.dns_port)]
            )  # fmt: skip
    cmds.append([*nat, "-I", "OUTPUT", "1", "-j", DNS_CHAIN])
    return cmds


def remove_commands() -> list[list[str]]:
    nat = ["iptables", "-w", "-t", "nat"]
    return [
        [*nat, "-D", "PREROUTING", "-p", "tcp", "-j", INBOUND_CHAIN],
        [*nat, "-D", "OUTPUT", "-p", "tcp", "-j", OUTPUT_CHAIN],
        [*nat, "-F", INBOUND_CHAIN],
        [*nat, "-X", INBOUND_CHAIN],
        [*nat, "-F", OUTPUT_CHAIN],
        [*nat, "-X", OUTPUT_CHAIN],
        [*nat, "-D", "OUTPUT", "-j", DNS_CHAIN],
        [*nat, "-F", DNS_CHAIN],
        [*nat, "-X", DNS_CHAIN],
    ]


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise GossamerError(
            "iptables is not installed", hint="install the iptables package"
        ) from None


def remove() -> int:
    """Remove our rules and chains; returns how many commands changed something."""
    changed = 0
    for cmd in remove_commands():
        result = _run(cmd)
        if result.returncode == 0:
            changed += 1
        elif "Permission denied" in result.stderr or "you must be root" in result.stderr:
            raise GossamerError(
                f"{' '.join(cmd)}: {result.stderr.strip()}",
                hint="run as root or with the NET_ADMIN capability",
            )
    # -D removes one copy; repeat for duplicates left by older installs
    while _run(remove_commands()[0]).returncode == 0:
        changed += 1
    return changed


def install(spec: InterceptSpec) -> list[list[str]]:
    """Install the rules (replacing ours if present); returns the commands run."""
    remove()
    cmds = install_commands(spec)
    for cmd in cmds:
        result = _run(cmd)
        if result.returncode != 0:
            remove()
            hint = "run as root or with the NET_ADMIN capability"
            raise GossamerError(f"{' '.join(cmd)}: {result.stderr.strip()}", hint=hint)
    return cmds


# -- SO_ORIGINAL_DST ---------------------------------------------------------

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
