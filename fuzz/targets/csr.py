"""CSR handling at the CA: bytes -> `CertificateAuthority.issue` (what the identity
service's Certify runs on a sidecar's CSR); only Gossamer's errors are allowed.

Input: one control byte, then the CSR. Control bits: 0x01 the rest is not a whole CSR
but its to-be-signed part (CertificationRequestInfo, DER), which the target signs with
a fixed P-256 key (`SIGNING_KEY`) so that mutations get past the signature check and
reach the key, CA and name checks; 0x02 the caller's policy allows the DNS name
`web.default.svc`. Otherwise the rest is given to the CA as it is (PEM or DER).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from fuzz.harness import FuzzBug, Reader
from gossamer.certs.ca import CertificateAuthority
from gossamer.errors import GossamerError

TRUST_DOMAIN = "gossamer.local"
IDENTITY = f"spiffe://{TRUST_DOMAIN}/ns/default/sa/web"
ALLOWED_DNS = ("web.default.svc",)
SIGNING_KEY = ec.derive_private_key(0x5EED_F022, ec.SECP256R1())
ECDSA_WITH_SHA256 = bytes.fromhex("300a06082a8648ce3d040302")

_ca: CertificateAuthority | None = None


def der(tag: int, body: bytes) -> bytes:
    """One DER element."""
    n = len(body)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + body


def signed_csr(tbs: bytes) -> bytes:
    """A DER CSR around `tbs`, signed with SIGNING_KEY (ECDSA with SHA-256)."""
    signature = SIGNING_KEY.sign(tbs, ec.ECDSA(hashes.SHA256()))
    return der(0x30, tbs + ECDSA_WITH_SHA256 + der(0x03, b"\x00" + signature))


def authority() -> CertificateAuthority:
    """One CA for the whole run, in a temporary folder."""
    global _ca
    if _ca is None:
        folder = Path(tempfile.mkdtemp(prefix="gossamer-fuzz-ca-"))
        _ca = CertificateAuthority.init(folder / "ca", TRUST_DOMAIN)
    return _ca


def test_one_input(data: bytes) -> None:
    reader = Reader(data)
    control = reader.byte()
    body = reader.rest()
    csr = signed_csr(body) if control & 0x01 else body
    allowed = ALLOWED_DNS if control & 0x02 else ()
    try:
        issued = authority().issue(csr, IDENTITY, 3600.0, allowed_dns=allowed)
    except GossamerError:
        return
    except Exception as exc:
        raise FuzzBug(f"CertificateAuthority.issue raised {type(exc).__name__}: {exc}") from exc
    if issued.spiffe_id != IDENTITY:
        raise FuzzBug(f"issued {issued.spiffe_id} for a CSR authorized as {IDENTITY}")
