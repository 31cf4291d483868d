"""Who is who in the mesh: service keys, DNS-1123 names, SPIFFE IDs and how they match.

A workload's SPIFFE ID is `spiffe://<trust-domain>/ns/<namespace>/sa/<service>` (Istio's
form). Authorization lists hold IDs, or ID prefixes ending in `*`
(`spiffe://td/ns/shop/sa/*`: every service of namespace shop).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gossamer.errors import ConfigError

SPIFFE_SCHEME = "spiffe://"
DEFAULT_NAMESPACE = "default"
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# Sidecars verify the control plane's certificate against this name, whatever address
# they reached it by (the pin or the trust bundle is what establishes trust).
CONTROL_TLS_NAME = "gossamer-control"
# The control plane's own SPIFFE ID is control.gossamer-system. Namespaces reserved for
# the mesh itself: only an admin may make join tokens in them, and no join token, of
# anyone, may name the control plane's identity. Nothing trusts the control plane by
# SPIFFE ID anyway: sidecars verify it by CONTROL_TLS_NAME, a DNS name that only the
# control plane's own certificate carries (workload leaves carry their SPIFFE ID alone).
CONTROL_NAMESPACE = "gossamer-system"
CONTROL_SERVICE = "control"
# A node gateway's identity (`gossamer gateway`): service `gateway` in the reserved
# namespace, so only an admin can make its join tokens. The control plane recognises a
# registration of this service as a node's gateway (its address and port are where other
# nodes reach the node's instances).
GATEWAY_SERVICE = "gateway"
RESERVED_NAMESPACES = frozenset({CONTROL_NAMESPACE})


def is_reserved_namespace(namespace: str) -> bool:
    """True for a namespace kept for the mesh itself (join tokens there need admin)."""
    return namespace in RESERVED_NAMESPACES


def gateway_key() -> ServiceKey:
    """The service key node gateways register under."""
    return ServiceKey(CONTROL_NAMESPACE, GATEWAY_SERVICE)


def is_control_identity(namespace: str, service: str) -> bool:
    """True for the control plane's own identity, which no join token may carry."""
    return namespace == CONTROL_NAMESPACE and service == CONTROL_SERVICE


def check_label(value: str, field_name: str) -> str:
    """Validate a DNS-1123 label (1-63 chars of a-z, 0-9 and '-', alphanumeric ends)."""
    if not isinstance(value, str) or len(value) > 63 or not DNS1123_LABEL.match(value):
        raise ConfigError(
            f"{value!r} is not a DNS-1123 label (lowercase letters, digits and '-', "
            "1-63 characters, starting and ending with a letter or digit)",
            field=field_name,
        )
    return value


@dataclass(frozen=True, order=True)
class ServiceKey:
    """A service's identity in the mesh: namespace and name."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.name}.{self.namespace}"


def spiffe_id(trust_domain: str, key: ServiceKey) -> str:
    """The SPIFFE ID of a service's workloads."""
    return f"{SPIFFE_SCHEME}{trust_domain}/ns/{key.namespace}/sa/{key.name}"


def parse_spiffe_id(value: str) -> tuple[str, ServiceKey] | None:
    """`spiffe://td/ns/N/sa/S` -> (td, ServiceKey(N, S)); None for anything else."""
    if not value.startswith(SPIFFE_SCHEME):
        return None
    td, _, path = value[len(SPIFFE_SCHEME) :].partition("/")
    parts = path.split("/")
    if len(parts) != 4 or parts[0] != "ns" or parts[2] != "sa" or not td:
        return None
    return td, ServiceKey(parts[1], parts[3])


def spiffe_matches(pattern: str, value: str) -> bool:
    """Whether an authorization entry admits an identity: equal, or a `*` prefix."""
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    return value == pattern
