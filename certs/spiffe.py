"""SPIFFE IDs of the mesh: `spiffe://<trust-domain>/ns/<namespace>/sa/<service>`.

Parsing, formatting, and extracting the IDs carried in certificates (the URI SANs), in
both cryptography's object form and Python ssl's `getpeercert()` dictionary form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from gossamer.certs.errors import InvalidSpiffeId

SCHEME = "spiffe://"
_TRUST_DOMAIN = re.compile(r"^[a-z0-9._-]{1,255}$")
_SEGMENT = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


@dataclass(frozen=True, order=True)
class SpiffeId:
    trust_domain: str
    namespace: str
    service: str

    def __post_init__(self) -> None:
        if not _TRUST_DOMAIN.match(self.trust_domain):
            raise InvalidSpiffeId(
                f"invalid trust domain {self.trust_domain!r}: use lowercase letters, digits, "
                "'.', '-' and '_'",
                field="trust_domain",
            )
        for name, value in (("namespace", self.namespace), ("service", self.service)):
            if not _SEGMENT.match(value):
                raise InvalidSpiffeId(
                    f"invalid {name} {value!r}: must be a DNS-1123 label", field=name
                )

    @classmethod
    def parse(cls, uri: str) -> SpiffeId:
        """Parse `spiffe://td/ns/N/sa/S`; anything else raises InvalidSpiffeId."""
        if not isinstance(uri, str) or not uri.startswith(SCHEME):
            raise InvalidSpiffeId(
                f"{uri!r} is not a SPIFFE ID",
                hint="expected spiffe://<trust-domain>/ns/<namespace>/sa/<service>",
            )
        rest = uri[len(SCHEME) :]
        parts = rest.split("/")
        if len(parts) != 5 or parts[1] != "ns" or parts[3] != "sa":
            raise InvalidSpiffeId(
                f"{uri!r} is not a mesh workload ID",
                hint="expected spiffe://<trust-domain>/ns/<namespace>/sa/<service>",
            )
        return cls(parts[0], parts[2], parts[4])

    @property
    def uri(self) -> str:
        return f"{SCHEME}{self.trust_domain}/ns/{self.namespace}/sa/{self.service}"

    def __str__(self) -> str:
        return self.uri


def is_spiffe_uri(value: str) -> bool:
    return value.startswith(SCHEME)


def spiffe_ids_of(cert: x509.Certificate | x509.CertificateSigningRequest) -> list[str]:
    """Every URI SAN of a certificate or CSR that is a SPIFFE ID (any form)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [u for u in san.get_values_for_type(x509.UniformResourceIdentifier) if is_spiffe_uri(u)]


def spiffe_id_from_peercert(peercert: dict[str, Any] | None) -> str | None:
    """The single SPIFFE ID in Python ssl's `getpeercert()` dict, or None.

    A certificate with several SPIFFE IDs is not a valid SVID and yields None.
    """
    if not peercert:
        return None
    found = [
        value
        for kind, value in peercert.get("subjectAltName", ())
        if kind == "URI" and is_spiffe_uri(value)
    ]
    return found[0] if len(found) == 1 else None
