"""Checks on certificate signing requests, without I/O.

`validate_csr(data, identity)` parses PEM or DER bytes and enforces, each failure with
its own error type: the self-signature verifies; the key is ECDSA P-256/P-384 or RSA of
at least 2048 bits; no CA:true request; at most one SPIFFE ID, and it equals the
authorized identity; no other SANs except DNS names and IP addresses the caller's
policy allows (certs/sans.py; others are refused, not dropped, so a caller learns at
once that it asked for too much). A CSR without any SAN is accepted: the issued leaf
carries the authorized identity anyway.
"""

from __future__ import annotations

from collections.abc import Collection

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gossamer.certs.errors import (
    CaRequested,
    CsrSignatureInvalid,
    IdentityMismatch,
    MultipleSpiffeIds,
    NotACsr,
    UnsupportedKey,
)
from gossamer.certs.sans import normalize_ip
from gossamer.certs.spiffe import is_spiffe_uri

ALLOWED_CURVES = ("secp256r1", "secp384r1")
MIN_RSA_BITS = 2048


def load_csr(data: bytes | str) -> x509.CertificateSigningRequest:
    """Parse a PEM or DER CSR; anything else raises NotACsr."""
    raw = data.encode() if isinstance(data, str) else bytes(data)
    try:
        if raw.lstrip().startswith(b"-----BEGIN"):
            csr = x509.load_pem_x509_csr(raw)
        else:
            csr = x509.load_der_x509_csr(raw)
        csr.extensions  # noqa: B018 - parsed lazily: a malformed one raises here
        return csr
    except (
        ValueError,
        TypeError,
        x509.InvalidVersion,
        x509.DuplicateExtension,
        x509.UnsupportedGeneralNameType,
    ):
        raise NotACsr(
            "the data is not a certificate signing request",
            hint="pass a PEM file starting with -----BEGIN CERTIFICATE REQUEST-----",
        ) from None


def check_key(csr: x509.CertificateSigningRequest) -> None:
    try:
        key = csr.public_key()
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise UnsupportedKey(f"the CSR's public key cannot be used: {exc}") from None
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in ALLOWED_CURVES:
            raise UnsupportedKey(f"ECDSA curve {key.curve.name} is not allowed; use P-256 or P-384")
        return
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise UnsupportedKey(f"RSA key of {key.key_size} bits is too small; use >= 2048")
        return
    raise UnsupportedKey(
        f"{type(key).__name__} keys are not allowed; use ECDSA P-256/P-384 or RSA >= 2048"
    )


def check_signature(csr: x509.CertificateSigningRequest) -> None:
    try:
        valid = csr.is_signature_valid
    except Exception:  # any failure to verify means an invalid signature
        valid = False
    if not valid:
        raise CsrSignatureInvalid("the CSR's signature does not verify with its own public key")


def check_not_ca(csr: x509.CertificateSigningRequest) -> None:
    try:
        bc = csr.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return
    if bc.ca:
        raise CaRequested("the CSR asks for a CA certificate (basicConstraints CA:true)")


def check_names(
    csr: x509.CertificateSigningRequest,
    identity: str,
    allowed_dns: Collection[str] = (),
    allowed_ips: Collection[str] = (),
) -> None:
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    spiffe = [u for u in uris if is_spiffe_uri(u)]
    if len(spiffe) > 1:
        raise MultipleSpiffeIds(f"the CSR carries {len(spiffe)} SPIFFE IDs; one is allowed")
    if spiffe and spiffe[0] != identity:
        raise IdentityMismatch(f"the CSR asks for {spiffe[0]} but is authorized for {identity}")
    for general in san:
        if isinstance(general, x509.UniformResourceIdentifier):
            if not is_spiffe_uri(general.value):
                raise IdentityMismatch(
                    f"the CSR asks for URI {general.value}, which is not allowed"
                )
        elif isinstance(general, x509.DNSName):
            if general.value not in allowed_dns:
                raise IdentityMismatch(f"the CSR asks for DNS name {general.value}, not allowed")
        elif isinstance(general, x509.IPAddress):
            if normalize_ip(str(general.value)) not in allowed_ips:
                raise IdentityMismatch(
                    f"the CSR asks for IP address {general.value}, not allowed",
                    hint="the join token must allow it: gossamer token create --allow-address",
                )
        else:
            raise IdentityMismatch(f"the CSR asks for {general}, which is not allowed")


def validate_csr(
    data: bytes | str,
    identity: str,
    *,
    allowed_dns: Collection[str] = (),
    allowed_ips: Collection[str] = (),
) -> x509.CertificateSigningRequest:
    """Parse and check a CSR for `identity`; returns it or raises a CsrError subclass."""
    csr = load_csr(data)
    check_key(csr)
    check_signature(csr)
    check_not_ca(csr)
    check_names(csr, identity, allowed_dns, allowed_ips)
    return csr


def csr_dns_names(csr: x509.CertificateSigningRequest) -> list[str]:
    """The DNS names a CSR asks for (none when it has no SAN extension)."""
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return list(san.get_values_for_type(x509.DNSName))
