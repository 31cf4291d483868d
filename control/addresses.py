"""Which address a sidecar may register for its instance (pure: no I/O).

A registered endpoint's `address` is where the mesh sends the instance's traffic, where
the control plane scrapes its admin port, and what `/v1/http_sd` hands Prometheus. So it
is not taken on the sidecar's word (issue 17, finding 10): a caller could otherwise make
the control plane, Prometheus and its own callers connect to any host.

Theory of operation. `check_address(requested, peer, leaf)` returns the address to
register, or raises `AddressRefused`:

- No address asked (a sidecar without `--advertise-address`, as every Compose sidecar):
  the connection's peer address, the one the control plane sees.
- The peer address itself: allowed. Both are compared as IP addresses, so `10.0.0.5`,
  `::ffff:10.0.0.5` (an IPv4 client of a dual-stack listener) and `10.0.0.5` written
  another way are the same; the normalized form is what is registered.
- Loopback for loopback: a caller that reaches the control plane over loopback runs in
  its network namespace (`gossamer up` without `--isolate`, tests, benchmarks) and can
  reach every loopback address there itself, so it may register any of them (127.0.0.2
  reaches the control plane from 127.0.0.1). A loopback address from a non-loopback
  peer is refused: it would point the control plane's scraper at its own host.
- An address the caller's verified leaf certificate carries: an IP SAN for an IP
  address, a DNS SAN for a host name. Leaves carry such SANs only when the operator put
  them in the join token (`gossamer token create --allow-address`, `POST /v1/tokens`
  `"addresses"`); renewals keep them (control/identity.py).
- Anything else is refused, with the address, the peer address and what would allow it.

Not checked here: `other_addresses` (control/registration.py says why).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from cryptography import x509

from gossamer.certs.sans import normalize_ip
from gossamer.errors import GossamerError

MAX_ADDRESS_LENGTH = 253  # a DNS name's longest; any IP address is shorter


class AddressRefused(GossamerError):
    """A registration asked for an address its connection and certificate do not allow."""

    def __init__(self, message: str, *, reason: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.reason = reason  # metric label: "foreign_address" or "no_peer_address"


def _is_loopback(address: str) -> bool:
    return ipaddress.ip_address(address).is_loopback


@dataclass(frozen=True)
class LeafAddresses:
    """The IP and DNS SANs of a verified leaf: the addresses it allows besides the peer's."""

    ips: frozenset[str] = frozenset()
    dns: frozenset[str] = frozenset()  # lower case

    @classmethod
    def of(cls, cert: x509.Certificate | None) -> LeafAddresses:
        if cert is None:
            return cls()
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return cls()
        ips = (normalize_ip(str(ip)) for ip in san.get_values_for_type(x509.IPAddress))
        return cls(
            frozenset(ip for ip in ips if ip is not None),
            frozenset(d.lower() for d in san.get_values_for_type(x509.DNSName)),
        )

    def all(self) -> tuple[str, ...]:
        """Every address the leaf carries (what a renewal keeps), IPs first."""
        return (*sorted(self.ips), *sorted(self.dns))

    def allows(self, address: str) -> bool:
        ip = normalize_ip(address)
        return ip in self.ips if ip is not None else address.lower().rstrip(".") in self.dns


def check_address(
    requested: str, peer: str | None, leaf: LeafAddresses, *, identity: str = "this sidecar"
) -> str:
    """The address to register for an instance that asked for `requested` (may be empty)
    over a connection from `peer`; raises AddressRefused."""
    peer_ip = normalize_ip(peer) if peer else None
    if not requested:
        if peer_ip is None:
            raise AddressRefused(
                f"the control plane cannot see the address {identity} connects from",
                reason="no_peer_address",
                hint="run the sidecar with --advertise-address ADDR and create its join "
                "token with --allow-address ADDR",
            )
        return peer_ip
    if len(requested) > MAX_ADDRESS_LENGTH:  # not echoed: it would only bloat the logs
        raise AddressRefused(
            f"{identity} may not register an address of {len(requested)} characters",
            reason="foreign_address",
        )
    asked_ip = normalize_ip(requested)
    if (
        asked_ip is not None
        and peer_ip is not None
        and (asked_ip == peer_ip or (_is_loopback(asked_ip) and _is_loopback(peer_ip)))
    ):
        return asked_ip
    if leaf.allows(requested):
        return asked_ip if asked_ip is not None else requested
    seen = f"it connects from {peer_ip}" if peer_ip else "its connection has no IP address"
    raise AddressRefused(
        f"{identity} may not register address {requested}: {seen} and its "
        f"certificate does not allow {requested}",
        reason="foreign_address",
        hint=f"leave out --advertise-address to register {peer_ip or 'the connection address'}, "
        f"or bootstrap the sidecar with a join token made with --allow-address {requested} "
        f'(POST /v1/tokens {{"addresses": ["{requested}"]}})',
    )
