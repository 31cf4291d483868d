"""Address SANs: the IP addresses and host names an operator may let a sidecar's leaf carry.

A sidecar registers the address the control plane sees it connect from; to register
another one (`gossamer proxy --advertise-address`) its leaf certificate must carry that
address, as an IP SAN or, for a host name, a DNS SAN (control/addresses.py). Only the
operator decides which: a join token lists them (`gossamer token create
--allow-address`, `POST /v1/tokens {"addresses": [...]}`), the bootstrap signing puts
them in the leaf, and a renewal keeps the ones the current leaf has (control/identity.py).

`check_addresses` validates such a list. Refused, whatever the operator asks: more than
`MAX_ADDRESSES`; anything that is neither an IP address nor a host name; unspecified
and multicast addresses; loopback addresses and the control plane's own TLS names
(`gossamer-control`, `localhost`): its server certificate carries those, and a workload
leaf must never be able to pass for the control plane with a client that checks names
(a sidecar reaching the control plane over loopback may register a loopback address
without any SAN anyway).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from gossamer.contract.identity import CONTROL_TLS_NAME
from gossamer.errors import ConfigError

MAX_ADDRESSES = 16
RESERVED_NAMES = frozenset({CONTROL_TLS_NAME, "localhost"})
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def normalize_ip(text: str) -> str | None:
    """The canonical form of an IP address (an IPv4-mapped IPv6 address as IPv4, an IPv6
    zone dropped), or None when `text` is not an IP address."""
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0] if ":" in text else text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def _is_host_name(name: str) -> bool:
    return 0 < len(name) <= 253 and all(_LABEL.match(label) for label in name.split("."))


def check_address(address: object) -> str:
    """`address` in canonical form (IP) or lower case (host name); ConfigError if it may
    not be allowed."""
    text = address.strip() if isinstance(address, str) else ""
    if not text:
        raise ConfigError(f"an allowed address must be an IP address or host name, not {address!r}")
    ip = normalize_ip(text)
    if ip is not None:
        parsed = ipaddress.ip_address(ip)
        if parsed.is_unspecified or parsed.is_multicast or parsed.is_loopback:
            raise ConfigError(
                f"{text} may not be allowed: an unspecified, multicast or loopback address",
                hint="a sidecar on the control plane's host registers a loopback address "
                "without --allow-address",
            )
        return ip
    name = text.lower().rstrip(".")
    if not _is_host_name(name):
        raise ConfigError(f"{text!r} is neither an IP address nor a host name")
    if name in RESERVED_NAMES:
        raise ConfigError(f"{name} is a name of the control plane's own certificate")
    return name


def check_addresses(addresses: Iterable[object]) -> tuple[str, ...]:
    """Validated, de-duplicated addresses a join token allows (ConfigError on `addresses`)."""
    if not isinstance(addresses, list | tuple):
        raise ConfigError(
            f"must be a list of IP addresses or host names, not {addresses!r}", field="addresses"
        )
    checked: list[str] = []
    for address in addresses:
        try:
            value = check_address(address)
        except ConfigError as exc:
            raise ConfigError(exc.detail, field="addresses", hint=exc.hint) from None
        if value not in checked:
            checked.append(value)
    if len(checked) > MAX_ADDRESSES:
        raise ConfigError(
            f"a join token allows at most {MAX_ADDRESSES} addresses, not {len(checked)}",
            field="addresses",
        )
    return tuple(checked)


def split_addresses(addresses: Iterable[str]) -> tuple[list[str], list[str]]:
    """(IP addresses in canonical form, host names in lower case) of `addresses`."""
    ips: list[str] = []
    names: list[str] = []
    for address in addresses:
        ip = normalize_ip(address)
        if ip is not None:
            ips.append(ip)
        else:
            names.append(address.lower().rstrip("."))
    return ips, names
