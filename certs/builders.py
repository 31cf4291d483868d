"""Certificate construction for the mesh CA (no file I/O).

Root (ECDSA P-256, 10 years, CA, no path limit) -> intermediate (1 year, CA, pathlen 0)
-> leaf (default 24 h): only the authorized SPIFFE URI SAN (plus DNS/IP SANs where the
caller's policy allows), random 159-bit serial, key usage digitalSignature, extended key
usage serverAuth + clientAuth, CA:false.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import secrets
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROOT_LIFETIME = dt.timedelta(days=3650)
INTERMEDIATE_LIFETIME = dt.timedelta(days=365)
LEAF_LIFETIME = dt.timedelta(hours=24)
BACKDATE = dt.timedelta(minutes=1)  # tolerate small clock skew between hosts


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def random_serial() -> int:
    """A random serial number of exactly 159 bits (positive, fits 20 DER bytes)."""
    return secrets.randbits(159) | (1 << 158)


def spki_pin(cert: x509.Certificate) -> str:
    """`sha256:<hex>` of the certificate's SubjectPublicKeyInfo (kubeadm's CA pin)."""
    der = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(der).hexdigest()


def _ca_name(trust_domain: str, label: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Gossamer"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, trust_domain),
            x509.NameAttribute(NameOID.COMMON_NAME, label),
        ]
    )


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


LEAF_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)
LEAF_EKU = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])


def make_root(
    trust_domain: str, generation: int, *, now: dt.datetime | None = None
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    start = (now or utcnow()) - BACKDATE
    name = _ca_name(trust_domain, f"Gossamer Root CA {generation}")
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(random_serial())
        .not_valid_before(start)
        .not_valid_after(start + ROOT_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_ca_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def make_intermediate(
    trust_domain: str,
    generation: int,
    root_cert: x509.Certificate,
    root_key: CertificateIssuerPrivateKeyTypes,
    *,
    now: dt.datetime | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = sign_intermediate(
        trust_domain, generation, key.public_key(), root_cert, root_key, now=now
    )
    return cert, key


def sign_intermediate(
    trust_domain: str,
    generation: int,
    public: CertificatePublicKeyTypes,
    root_cert: x509.Certificate,
    root_key: CertificateIssuerPrivateKeyTypes,
    *,
    replica: str = "",
    lifetime: dt.timedelta = INTERMEDIATE_LIFETIME,
    now: dt.datetime | None = None,
) -> x509.Certificate:
    """An intermediate (CA, pathlen 0) for `public`, signed by the root of `generation`.

    A replica's intermediate (`replica` set) carries its name and a random tag in its
    common name: every issuer in the mesh has its own subject, since OpenSSL finds the
    CRL of a leaf's issuer by the issuer's name."""
    start = (now or utcnow()) - BACKDATE
    end = min(start + lifetime, root_cert.not_valid_after_utc)
    label = f"Gossamer Intermediate CA {generation}"
    if replica:
        label = f"{label} {replica} {secrets.token_hex(4)}"
    return (
        x509.CertificateBuilder()
        .subject_name(_ca_name(trust_domain, label))
        .issuer_name(root_cert.subject)
        .public_key(public)
        .serial_number(random_serial())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(authority_key_id(root_cert), critical=False)
        .sign(root_key, hashes.SHA256())
    )


def authority_key_id(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """The AuthorityKeyIdentifier naming `issuer` (its SKI, else one from its key)."""
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key())  # type: ignore[arg-type]


class LeafSigner:
    """Signs leaves with one intermediate; the per-issuer parts are computed once."""

    def __init__(
        self, intermediate: x509.Certificate, key: CertificateIssuerPrivateKeyTypes
    ) -> None:
        self.intermediate = intermediate
        self.key = key
        self._aki = authority_key_id(intermediate)
        self._issuer = intermediate.subject
        self._ceiling = intermediate.not_valid_after_utc
        self.intermediate_pem = intermediate.public_bytes(serialization.Encoding.PEM)

    def sign(
        self,
        public_key: CertificatePublicKeyTypes,
        spiffe_id: str,
        *,
        lifetime: dt.timedelta = LEAF_LIFETIME,
        dns_names: Sequence[str] = (),
        ip_addresses: Sequence[str] = (),
        now: dt.datetime | None = None,
    ) -> x509.Certificate:
        start = (now or utcnow()) - BACKDATE
        end = min(start + BACKDATE + lifetime, self._ceiling)
        sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(spiffe_id)]
        sans += [x509.DNSName(d) for d in dns_names]
        sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Gossamer")]))
            .issuer_name(self._issuer)
            .public_key(public_key)
            .serial_number(random_serial())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(LEAF_USAGE, critical=True)
            .add_extension(LEAF_EKU, critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(self._aki, critical=False)
            .sign(self.key, hashes.SHA256())
        )
