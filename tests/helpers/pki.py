"""Certificates for tests, made with the real mesh CA (gossamer.certs)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gossamer.certs.ca import CertificateAuthority
from gossamer.certs.keys import build_csr, generate_key, key_to_pem
from gossamer.certs.spiffe import SpiffeId

TRUST_DOMAIN = "gossamer.local"


@dataclass(frozen=True)
class Workload:
    """A workload's key, chain and the bundle it trusts, as PEM bytes and files."""

    spiffe_id: str
    key_pem: bytes
    chain_pem: bytes
    bundle_pem: bytes
    key_file: Path
    chain_file: Path
    bundle_file: Path


def make_ca(directory: Path, trust_domain: str = TRUST_DOMAIN) -> CertificateAuthority:
    return CertificateAuthority.init(directory, trust_domain)


def make_workload(
    ca: CertificateAuthority,
    service: str,
    out_dir: Path,
    *,
    namespace: str = "default",
    ttl: float = 3600.0,
) -> Workload:
    """A leaf for `service` from `ca`, also written to files in `out_dir`."""
    sid = SpiffeId(ca.trust_domain, namespace, service).uri
    key = generate_key()
    issued = ca.issue(build_csr(key, sid), sid, ttl)
    out_dir.mkdir(parents=True, exist_ok=True)
    key_pem = key_to_pem(key)
    bundle = ca.trust_bundle_pem()
    files = {}
    for name, data in (("key", key_pem), ("chain", issued.chain_pem), ("bundle", bundle)):
        path = out_dir / f"{service}-{name}.pem"
        path.write_bytes(data)
        path.chmod(0o600)
        files[name] = path
    return Workload(
        sid, key_pem, issued.chain_pem, bundle, files["key"], files["chain"], files["bundle"]
    )
