"""The mesh certificate authority: a directory of roots and intermediates, and issuance.

Layout of the CA directory (keys are mode 0600, the directory 0700):

    ca.json                 trust domain, generations, the active one
    root-<n>.pem / .key     root of generation n (key absent for a retired root)
    intermediate-<n>.pem/.key
    bundle.pem              every trusted root: during a rotation, old and new

A *replica* directory (certs/intermediates.py: `gossamer certs intermediate`) has the
same layout without any root key: the roots are trust anchors only, and each
intermediate (with its key, made in that directory) was issued to that one control-plane
replica. `ca.json` then names the replica and lists every trusted root generation
(`roots`), including those it holds no intermediate of. Such a CA issues leaves like any
other but cannot rotate or retire roots (`replica` is set).

Rotation: `rotate_root()` adds generation n+1 (new root and intermediate) to the bundle
at once and makes it the issuing generation after a short propagation delay, so every
sidecar has the new root before it meets a leaf signed under it; the old root stays in
the bundle, so leaves from either generation verify. `retire_root()` removes the old
roots once every leaf has been renewed.

The *anchor* is the oldest trusted generation: every party trusts it during an overlap,
so the control plane's own server certificate is issued from it and join tokens pin it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from gossamer.certs import builders
from gossamer.certs.ca_files import (
    BUNDLE_FILE,
    STATE_FILE,
    adopt_root,
    load_cert,
    load_key,
    pem,
    write_generation,
    write_state,
)
from gossamer.certs.csr import csr_dns_names, validate_csr
from gossamer.certs.errors import CaError, CaExists, CaNotFound
from gossamer.certs.keys import generate_key, key_to_pem
from gossamer.certs.sans import split_addresses
from gossamer.certs.spiffe import SpiffeId
from gossamer.fsutil import locked

DEFAULT_CA_DIR = "./.gossamer/ca"
# Time between adding a new root to the bundle and issuing leaves from it: the control
# plane pushes the new bundle to every sidecar within this window.
DEFAULT_PROPAGATION = 15.0


__all__ = [
    "BUNDLE_FILE",
    "DEFAULT_CA_DIR",
    "DEFAULT_PROPAGATION",
    "STATE_FILE",
    "CertificateAuthority",
    "Generation",
    "IssuedCertificate",
    "default_ca_dir",
]


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


class CertificateAuthority:
    """A loaded CA directory. Use `init` to create one and `load` to open it."""

    def __init__(
        self,
        directory: Path,
        trust_domain: str,
        generations: list[Generation],
        active: int,
        active_from: float = 0.0,
        *,
        replica: str = "",
        extra_roots: dict[int, x509.Certificate] | None = None,
    ):
        self.directory = directory
        self.replica = replica  # "" for the root CA; a replica's name otherwise
        self.extra_roots = dict(extra_roots or {})  # trusted roots without an intermediate
        self.trust_domain = trust_domain
        self.generations = generations
        self.active = active
        self.active_from = active_from
        self._generation(active)
        self._signers: dict[int, builders.LeafSigner] = {}

    @property
    def anchor(self) -> int:
        """The oldest trusted generation (server certificates and token pins use it)."""
        return min(g.number for g in self.generations)

    def issuing_generation(self, now: dt.datetime | None = None) -> int:
        """The generation leaves are signed under now (the previous one while propagating)."""
        current = (now or builders.utcnow()).timestamp()
        if current >= self.active_from:
            return self.active
        older = [g.number for g in self.generations if g.number < self.active]
        return max(older) if older else self.active

    def _signer(self, number: int) -> builders.LeafSigner:
        signer = self._signers.get(number)
        if signer is None:
            gen = self._generation(number)
            key = load_key(self.directory / f"intermediate-{number}.key")
            signer = self._signers[number] = builders.LeafSigner(gen.intermediate, key)
        return signer

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
                root, root_key = adopt_root(root_cert_pem, root_key_pem)
            else:
                root, root_key = builders.make_root(trust_domain, 1)
            write_generation(path, trust_domain, 1, root, root_key)
            write_state(path, trust_domain, [1], 1)
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
                n, load_cert(path / f"root-{n}.pem"), load_cert(path / f"intermediate-{n}.pem")
            )
            for n in state["generations"]
        ]
        extra = {
            int(n): load_cert(path / f"root-{n}.pem")
            for n in state.get("roots", ())
            if n not in state["generations"]
        }
        return cls(
            path,
            state["trust_domain"],
            generations,
            state["active"],
            float(state.get("active_from", 0.0)),
            replica=str(state.get("replica", "")),
            extra_roots=extra,
        )

    @property
    def holds_root_key(self) -> bool:
        """True for the root CA's own directory (its roots' keys are here)."""
        return not self.replica and all(
            (self.directory / f"root-{g.number}.key").exists() for g in self.generations
        )

    def _require_root(self, what: str) -> None:
        if self.replica:
            raise CaError(
                f"{self.directory} is the intermediate-only CA of replica {self.replica}: "
                f"it holds no root key and cannot {what}",
                hint=f"{what} on the host that holds the root (gossamer certs ... --dir ROOT_CA)",
            )

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
        addresses: Sequence[str] = (),
        now: dt.datetime | None = None,
    ) -> IssuedCertificate:
        """Validate a CSR for `identity` and sign a leaf; raises CsrError subclasses.

        `allowed_dns`: DNS names the CSR may ask for (the leaf carries those it asks).
        `addresses`: IP addresses and host names the leaf carries whether the CSR asks for
        them or not (an operator allowed them: certs/sans.py); the CSR may ask for them."""
        sid = identity if isinstance(identity, SpiffeId) else SpiffeId.parse(identity)
        if sid.trust_domain != self.trust_domain:
            raise CaError(
                f"{sid} is outside this CA's trust domain {self.trust_domain}",
                hint=f"use spiffe://{self.trust_domain}/ns/<namespace>/sa/<service>",
            )
        if ttl <= 0:
            raise CaError("the certificate lifetime must be positive")
        uri = sid.uri
        ips, names = split_addresses(addresses)
        csr = validate_csr(csr_pem, uri, allowed_dns=[*allowed_dns, *names], allowed_ips=ips)
        dns = list(dict.fromkeys([*(d for d in csr_dns_names(csr) if d in allowed_dns), *names]))
        signer = self._signer(self.issuing_generation(now))
        cert = signer.sign(
            csr.public_key(),
            uri,
            lifetime=dt.timedelta(seconds=ttl),
            dns_names=dns,
            ip_addresses=ips,
            now=now,
        )
        leaf = pem(cert)
        return IssuedCertificate(
            cert_pem=leaf,
            chain_pem=leaf + signer.intermediate_pem,
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
        """A key and leaf for a mesh server (the control plane), DNS/IP SANs allowed.

        Issued under the anchor generation, which every client trusts during a rotation.
        """
        sid = identity if isinstance(identity, SpiffeId) else SpiffeId.parse(identity)
        key = generate_key()
        signer = self._signer(self.anchor)
        cert = signer.sign(
            key.public_key(),
            sid.uri,
            lifetime=dt.timedelta(seconds=ttl),
            dns_names=dns_names,
            ip_addresses=ip_addresses,
        )
        leaf = pem(cert)
        issued = IssuedCertificate(
            leaf,
            leaf + signer.intermediate_pem,
            sid.uri,
            cert.not_valid_before_utc,
            cert.not_valid_after_utc,
            cert.serial_number,
        )
        return key_to_pem(key), issued

    # -- trust -------------------------------------------------------------------------
    def roots(self) -> dict[int, x509.Certificate]:
        """Every trusted root by generation (a replica may trust roots it has no
        intermediate of)."""
        out = {g.number: g.root for g in self.generations}
        out.update(self.extra_roots)
        return dict(sorted(out.items()))

    def trust_bundle_pem(self) -> bytes:
        return b"".join(pem(root) for root in self.roots().values())

    def root_pin(self) -> str:
        """The pin join tokens carry: the anchor root's public key."""
        return builders.spki_pin(self._generation(self.anchor).root)

    def anchor_root_pem(self) -> bytes:
        return pem(self._generation(self.anchor).root)

    def issuers(self) -> list[tuple[x509.Certificate, CertificateIssuerPrivateKeyTypes]]:
        """Every trusted generation's intermediate and its key: the issuers of leaves,
        which sign the CRLs (certs/crl.py)."""
        return [
            (signer.intermediate, signer.key)
            for signer in (self._signer(g.number) for g in self.generations)
        ]

    # -- rotation ----------------------------------------------------------------------
    def rotate_root(self, propagation: float = DEFAULT_PROPAGATION) -> int:
        """Create generation n+1, trust it now, issue from it after `propagation` s."""
        self._require_root("rotate the root")
        with locked(self.directory / ".lock"):
            number = max(g.number for g in self.generations) + 1
            root, root_key = builders.make_root(self.trust_domain, number)
            write_generation(self.directory, self.trust_domain, number, root, root_key)
            numbers = [g.number for g in self.generations] + [number]
            since = builders.utcnow().timestamp() + max(0.0, propagation)
            write_state(self.directory, self.trust_domain, numbers, number, since)
        self._reload()
        return number

    def retire_root(self, generation: int | None = None) -> list[int]:
        """Drop old roots from the bundle (all but the active one, or just `generation`)."""
        self._require_root("retire a root")
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
        if self.issuing_generation() != self.active:
            raise CaError(
                "the new root is still propagating; leaves are still issued from the old one",
                hint="wait a few seconds after rotate-root, then retire",
            )
        if not retired:
            raise CaError("there is no old root to retire", hint="only the active root remains")
        with locked(self.directory / ".lock"):
            keep = [g.number for g in self.generations if g.number not in retired]
            write_state(self.directory, self.trust_domain, keep, self.active, self.active_from)
            for n in retired:
                for name in (f"root-{n}", f"intermediate-{n}"):
                    for suffix in (".pem", ".key"):
                        (self.directory / f"{name}{suffix}").unlink(missing_ok=True)
        self._reload()
        return retired

    def _reload(self) -> None:
        fresh = CertificateAuthority.load(self.directory)
        self.__dict__.update(fresh.__dict__)
