"""The mesh certificate authority: a directory of roots and intermediates, and issuance.

Layout of the CA directory (keys are mode 0600, the directory 0700):

    ca.json                 trust domain, generations, the active one
    root-<n>.pem / .key     root of generation n (key absent for a retired root)
    intermediate-<n>.pem/.key
    bundle.pem              every trusted root: during a rotation, old and new

Rotation: `rotate_root()` adds generation n+1 (new root and intermediate) and makes it
active for issuance while the old root stays in the bundle, so leaves from either verify;
`retire_root()` removes the old roots once every leaf has been renewed.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from gossamer.certs import builders
from gossamer.certs.csr import validate_csr
from gossamer.certs.errors import CaError, CaExists, CaNotFound
from gossamer.certs.keys import generate_key, key_to_pem
from gossamer.certs.spiffe import SpiffeId
from gossamer.fsutil import atomic_write, locked

STATE_FILE = "ca.json"
BUNDLE_FILE = "bundle.pem"
DEFAULT_CA_DIR = "./.gossamer/ca"


def default_ca_dir() -> Path:
    return Path(os.environ.get("GOSSAMER_CA_DIR", DEFAULT_CA_DIR))


@dataclass(frozen=True)
class IssuedCertificate:
    cert_pem: bytes
    chain_pem: bytes  # leaf + intermediate
    spiffe_id: str
    not_before: dt.datetime
    not_after: dt.datetime
    serial: int


@dataclass(frozen=True)
class Generation:
    number: int
    root: x509.Certificate
    intermediate: x509.Certificate


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _load_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except FileNotFoundError:
        raise CaError(f"CA file missing: {path}", hint="the CA directory is incomplete") from None
    except ValueError:
        raise CaError(f"not a PEM certificate: {path}") from None


def _load_key(path: Path) -> CertificateIssuerPrivateKeyTypes:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise CaError(f"CA key missing: {path}") from None
    except (ValueError, TypeError) as exc:
        raise CaError(f"cannot load private key {path}: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise CaError(f"{path}: only ECDSA and RSA CA keys are supported")
    return key


class CertificateAuthority:
    """A loaded CA directory. Use `init` to create one and `load` to open it."""

    def __init__(
        self, directory: Path, trust_domain: str, generations: list[Generation], active: int
    ):
        self.directory = directory
        self.trust_domain = trust_domain
        self.generations = generations
        self.active = active
        gen = self._generation(active)
        self._signer = builders.LeafSigner(
            gen.intermediate, _load_key(directory / f"intermediate-{active}.key")
        )

    # -- creation and loading ----------------------------------------------------------
    @classmethod
    def init(
        cls,
        directory: str | Path,
        trust_domain: str,
        *,
        force: bool = False,
        root_cert_pem: bytes | None = None,
        root_key_pem: bytes | None = None,
    ) -> CertificateAuthority:
        """Create a root (or adopt the given one) and an intermediate in `directory`."""
        SpiffeId(trust_domain, "default", "check")  # validates the trust domain
        path = Path(directory)
        if (path / STATE_FILE).exists() and not force:
            raise CaExists(
                f"a CA already exists in {path}", hint="pass --force to replace it (destroys it)"
            )
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(path, 0o700)
        with locked(path / ".lock"):
            for stale in path.glob("*-*.pem"):
                stale.unlink()
            for stale in path.glob("*-*.key"):
                stale.unlink()
            if root_cert_pem is not None or root_key_pem is not None:
                root, root_key = _adopt_root(root_cert_pem, root_key_pem)
            else:
                root, root_key = builders.make_root(trust_domain, 1)
            _write_generation(path, trust_domain, 1, root, root_key)
            _write_state(path, trust_domain, [1], 1)
        return cls.load(path)

    @classmethod
    def load(cls, directory: str | Path) -> CertificateAuthority:
        path = Path(directory)
        try:
            state = json.loads((path / STATE_FILE).read_text())
        except FileNotFoundError:
            raise CaNotFound(
                f"no CA in {path}", hint="create one with: gossamer certs init --trust-domain D"
            ) from None
        except (OSError, ValueError) as exc:
            raise CaError(f"cannot read {path / STATE_FILE}: {exc}") from None
        generations = [
            Generation(
                n, _load_cert(path / f"root-{n}.pem"), _load_cert(path / f"intermediate-{n}.pem")
            )
            for n in state["generations"]
        ]
        return cls(path, state["trust_domain"], generations, state["active"])

    def _generation(self, number: int) -> Generation:
        for gen in self.generations:
            if gen.number == number:
                return gen
        raise CaError(f"generation {number} is not in the CA state")

    def fingerprint(self) -> tuple[int, int]:
        """Changes whenever another process rotates or re-creates the CA (poll it)."""
        st = (self.directory / STATE_FILE).stat()
        return (st.st_ino, st.st_mtime_ns)

    # -- issuance ----------------------------------------------------------------------
    def issue(
        self,
        csr_pem: bytes | str,
        identity: SpiffeId | str,
        ttl: float = builders.LEAF_LIFETIME.total_seconds(),
        *,
        allowed_dns: Sequence[str] = (),
        now: dt.datetime | None = None,
    ) -> IssuedCertificate:
        """Validate a CSR for `identity` and sign a leaf; raises CsrError subclasses."""
        sid = identity if isinstance(identity, SpiffeId) else SpiffeId.parse(identity)
        if sid.trust_domain != self.trust_domain:
            raise CaError(
                f"{sid} is outside this CA's trust domain {self.trust_domain}",
                hint=f"use spiffe://{self.trust_domain}/ns/<namespace>/sa/<service>",
            )
        if ttl <= 0:
            raise CaError("the certificate lifetime must be positive")
        uri = sid.uri
        csr = validate_csr(csr_pem, uri, allowed_dns=allowed_dns)
        dns = [d for d in _csr_dns(csr) if d in allowed_dns]
        cert = self._signer.sign(
            csr.public_key(), uri, lifetime=dt.timedelta(seconds=ttl), dns_names=dns, now=now
        )
        leaf = _pem(cert)
        return IssuedCertificate(
            cert_pem=leaf,
            chain_pem=leaf + self._signer.intermediate_pem,
            spiffe_id=uri,
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            serial=cert.serial_number,
        )

    def issue_server_certificate(
        self,
        identity: SpiffeId | str,
        *,
        dns_names: Sequence[str] = (),
        ip_addresses: Sequence[str] = (),
        ttl: float = builders.LEAF_LIFETIME.total_seconds(),
    ) -> tuple[bytes, IssuedCertificate]:
        """A key and leaf for a mesh server (the control plane), DNS/IP SANs allowed."""
        sid = identity if isinstance(identity, SpiffeId) else SpiffeId.parse(identity)
        key = generate_key()
        cert = self._signer.sign(
            key.public_key(),
            sid.uri,
            lifetime=dt.timedelta(seconds=ttl),
            dns_names=dns_names,
            ip_addresses=ip_addresses,
        )
        leaf = _pem(cert)
        issued = IssuedCertificate(
            leaf,
            leaf + self._signer.intermediate_pem,
            sid.uri,
            cert.not_valid_before_utc,
            cert.not_valid_after_utc,
            cert.serial_number,
        )
        return key_to_pem(key), issued

    # -- trust -------------------------------------------------------------------------
    def trust_bundle_pem(self) -> bytes:
        return b"".join(_pem(g.root) for g in self.generations)

    def root_pin(self) -> str:
        return builders.spki_pin(self._generation(self.active).root)

    def root_pins(self) -> list[str]:
        return [builders.spki_pin(g.root) for g in self.generations]

    # -- rotation ----------------------------------------------------------------------
    def rotate_root(self) -> int:
        """Create generation n+1, issue from it, keep every older root trusted."""
        with locked(self.directory / ".lock"):
            number = max(g.number for g in self.generations) + 1
            root, root_key = builders.make_root(self.trust_domain, number)
            _write_generation(self.directory, self.trust_domain, number, root, root_key)
            numbers = [g.number for g in self.generations] + [number]
            _write_state(self.directory, self.trust_domain, numbers, number)
        self._reload()
        return number

    def retire_root(self, generation: int | None = None) -> list[int]:
        """Drop old roots from the bundle (all but the active one, or just `generation`)."""
        if generation == self.active:
            raise CaError(
                f"generation {generation} is the active root and cannot be retired",
                hint="rotate first: gossamer certs rotate-root",
            )
        retired = [
            g.number
            for g in self.generations
            if g.number != self.active and (generation is None or g.number == generation)
        ]
        if generation is not None and not retired:
            raise CaError(f"no root of generation {generation}")
        if not retired:
            raise CaError("there is no old root to retire", hint="only the active root remains")
        with locked(self.directory / ".lock"):
            keep = [g.number for g in self.generations if g.number not in retired]
            _write_state(self.directory, self.trust_domain, keep, self.active)
            for n in retired:
                for name in (f"root-{n}", f"intermediate-{n}"):
                    for suffix in (".pem", ".key"):
                        (self.directory / f"{name}{suffix}").unlink(missing_ok=True)
        self._reload()
        return retired

    def _reload(self) -> None:
        fresh = CertificateAuthority.load(self.directory)
        self.__dict__.update(fresh.__dict__)


def _csr_dns(csr: x509.CertificateSigningRequest) -> list[str]:
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return list(san.get_values_for_type(x509.DNSName))


def _adopt_root(
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


def _write_generation(
    path: Path,
    trust_domain: str,
    number: int,
    root: x509.Certificate,
    root_key: CertificateIssuerPrivateKeyTypes,
) -> None:
    inter, inter_key = builders.make_intermediate(trust_domain, number, root, root_key)
    atomic_write(path / f"root-{number}.key", key_to_pem(root_key), mode=0o600)
    atomic_write(path / f"root-{number}.pem", _pem(root))
    atomic_write(path / f"intermediate-{number}.key", key_to_pem(inter_key), mode=0o600)
    atomic_write(path / f"intermediate-{number}.pem", _pem(inter))


def _write_state(path: Path, trust_domain: str, generations: list[int], active: int) -> None:
    bundle = b"".join(_pem(_load_cert(path / f"root-{n}.pem")) for n in generations)
    atomic_write(path / BUNDLE_FILE, bundle)
    state: dict[str, Any] = {
        "trust_domain": trust_domain,
        "generations": generations,
        "active": active,
    }
    atomic_write(path / STATE_FILE, json.dumps(state, indent=2) + "\n")
