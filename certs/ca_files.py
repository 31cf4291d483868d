"""The CA directory's files: loading certificates and keys, writing a generation and the
state (certs/ca.py describes the layout). Keys are written mode 0600, atomically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from gossamer.certs import builders
from gossamer.certs.errors import CaError
from gossamer.certs.keys import key_to_pem
from gossamer.fsutil import atomic_write

STATE_FILE = "ca.json"
BUNDLE_FILE = "bundle.pem"


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except FileNotFoundError:
        raise CaError(f"CA file missing: {path}", hint="the CA directory is incomplete") from None
    except ValueError:
        raise CaError(f"not a PEM certificate: {path}") from None


def load_key(path: Path) -> CertificateIssuerPrivateKeyTypes:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise CaError(f"CA key missing: {path}") from None
    except (ValueError, TypeError) as exc:
        raise CaError(f"cannot load private key {path}: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise CaError(f"{path}: only ECDSA and RSA CA keys are supported")
    return key


def adopt_root(
    cert_pem: bytes | None, key_pem: bytes | None
) -> tuple[x509.Certificate, CertificateIssuerPrivateKeyTypes]:
    if cert_pem is None or key_pem is None:
        raise CaError("bringing your own root needs both --root-cert and --root-key")
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise CaError("--root-cert is not a PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise CaError(f"--root-key cannot be loaded: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise CaError("--root-key must be an ECDSA or RSA key")
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if key.public_key().public_bytes(der, pub) != cert.public_key().public_bytes(der, pub):
        raise CaError("--root-key does not match --root-cert")
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        bc = None
    if bc is None or not bc.ca or (bc.path_length is not None and bc.path_length < 1):
        raise CaError("--root-cert is not a CA certificate that may sign an intermediate")
    if cert.not_valid_after_utc <= builders.utcnow():
        raise CaError("--root-cert has expired")
    return cert, key


def write_generation(
    path: Path,
    trust_domain: str,
    number: int,
    root: x509.Certificate,
    root_key: CertificateIssuerPrivateKeyTypes,
) -> None:
    inter, inter_key = builders.make_intermediate(trust_domain, number, root, root_key)
    atomic_write(path / f"root-{number}.key", key_to_pem(root_key), mode=0o600)
    atomic_write(path / f"root-{number}.pem", pem(root))
    atomic_write(path / f"intermediate-{number}.key", key_to_pem(inter_key), mode=0o600)
    atomic_write(path / f"intermediate-{number}.pem", pem(inter))


def write_state(
    path: Path, trust_domain: str, generations: list[int], active: int, active_from: float = 0.0
) -> None:
    bundle = b"".join(pem(load_cert(path / f"root-{n}.pem")) for n in generations)
    atomic_write(path / BUNDLE_FILE, bundle)
    state: dict[str, Any] = {
        "trust_domain": trust_domain,
        "generations": generations,
        "active": active,
        "active_from": active_from,
    }
    atomic_write(path / STATE_FILE, json.dumps(state, indent=2) + "\n")
