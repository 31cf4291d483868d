"""Intermediates for control-plane replicas: each replica signs with its own.

Several control-plane replicas on several hosts must not share one CA private key. So
each replica gets its own intermediate, issued from the mesh root, and its key is made
in the replica's own CA directory and never leaves it; the root (and its key) may stay
on one host, even offline. Leaves carry the chain leaf + the replica's intermediate, so
every peer verifies them against the shared roots.

Two ways to get one (README, "Mesh identity"):

- Same host as the root: `gossamer certs intermediate --out DIR --ca-dir ROOT` does it
  all at once (`issue_local`): key and CSR made in DIR, signed with the root, installed.
- Another host: `gossamer certs intermediate-csr --out DIR --name N` there (`request`:
  the key stays in DIR as `intermediate-pending.key`, the CSR is `DIR/intermediate.csr`),
  `gossamer certs sign-intermediate --csr FILE --ca-dir ROOT --out SIGNED` on the root's
  host (`sign`: a JSON document with the intermediate and every trusted root, no key),
  then `gossamer certs install-intermediate --dir DIR --signed SIGNED` back on the
  replica's host (`install`).

The replica directory has the CA directory's layout without root keys (certs/ca.py).
Its intermediate for root generation g is its generation g; installing one again (a new
intermediate for a rotated root, or a renewed one before the year is out) keeps the
intermediates of the other trusted roots, so leaves and the control plane's own
certificate (issued under the anchor, the oldest root) keep verifying during a rotation.
Roots the signed document no longer lists (retired) are dropped.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import socket
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gossamer.certs import builders
from gossamer.certs.ca import CertificateAuthority
from gossamer.certs.ca_files import BUNDLE_FILE, STATE_FILE, load_key
from gossamer.certs.errors import CaError, CaExists
from gossamer.certs.keys import generate_key, key_to_pem
from gossamer.fsutil import atomic_write, locked

PENDING_KEY = "intermediate-pending.key"
CSR_FILE = "intermediate.csr"
CHAIN_FILE = "chain.pem"
FORMAT = "gossamer-intermediate/1"
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def default_name() -> str:
    """The host's name as a replica name (lower case, other characters as '-')."""
    raw = re.sub(r"[^a-z0-9-]+", "-", socket.gethostname().split(".")[0].lower()).strip("-")
    return raw[:63] or "replica"


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise CaError(
            f"replica name {name!r} is not a DNS label (a-z, 0-9, '-', at most 63)",
            hint="pass --name, e.g. --name node-2",
        )
    return name


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _check_out(out: Path) -> None:
    try:
        state = json.loads((out / STATE_FILE).read_text())
    except FileNotFoundError:
        return
    except (OSError, ValueError) as exc:
        raise CaError(f"cannot read {out / STATE_FILE}: {exc}") from None
    if not state.get("replica"):
        raise CaExists(
            f"{out} holds a root CA, not a replica's intermediate",
            hint="give --out a directory of its own for the replica",
        )


def request(out: Path, name: str) -> bytes:
    """Make the replica's key in `out` (kept there, mode 0600) and return its CSR."""
    check_name(name)
    _check_out(out)
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = generate_key()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = csr.public_bytes(serialization.Encoding.PEM)
    atomic_write(out / PENDING_KEY, key_to_pem(key), mode=0o600)
    atomic_write(out / CSR_FILE, pem)
    return pem


def sign(ca: CertificateAuthority, csr_pem: bytes, *, ttl: float | None = None) -> dict[str, Any]:
    """On the root's host: the signed intermediate for a replica's CSR, under the
    active root, with every trusted root (JSON-ready; nothing secret in it)."""
    ca._require_root("sign an intermediate")
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError:
        raise CaError("not a PEM certificate signing request") from None
    if not csr.is_signature_valid:
        raise CaError("the CSR's signature does not verify")
    public = csr.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise CaError("an intermediate's key must be ECDSA (gossamer certs intermediate-csr)")
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    name = check_name(str(names[0].value) if names else "")
    number = ca.active  # the newest root (its propagation delay travels along)
    generation = ca._generation(number)
    root_key = load_key(ca.directory / f"root-{number}.key")
    lifetime = builders.INTERMEDIATE_LIFETIME
    if ttl is not None:
        if ttl <= 0:
            raise CaError("the intermediate's lifetime must be positive")
        lifetime = min(lifetime, dt.timedelta(seconds=ttl))
    cert = builders.sign_intermediate(
        ca.trust_domain, number, public, generation.root, root_key,
        replica=name, lifetime=lifetime,
    )  # fmt: skip
    return {
        "format": FORMAT,
        "trust_domain": ca.trust_domain,
        "replica": name,
        "generation": number,
        "active_from": ca.active_from,
        "intermediate": _pem(cert).decode(),
        "roots": {str(n): _pem(root).decode() for n, root in ca.roots().items()},
    }


def install(out: Path, signed: dict[str, Any]) -> CertificateAuthority:
    """On the replica's host: put the signed intermediate beside its pending key."""
    try:
        if signed.get("format") != FORMAT:
            raise CaError(f"not a signed intermediate (format {signed.get('format')!r})")
        number = int(signed["generation"])
        name = check_name(str(signed["replica"]))
        trust_domain = str(signed["trust_domain"])
        cert = x509.load_pem_x509_certificate(str(signed["intermediate"]).encode())
        roots = {
            int(n): x509.load_pem_x509_certificate(str(p).encode())
            for n, p in signed["roots"].items()
        }
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CaError(f"the signed intermediate is malformed: {exc}") from None
    if number not in roots:
        raise CaError(f"the signed intermediate lacks root generation {number}")
    try:
        cert.verify_directly_issued_by(roots[number])
    except (ValueError, TypeError, InvalidSignature):
        raise CaError(f"the intermediate is not signed by root generation {number}") from None
    _check_out(out)
    if not (out / PENDING_KEY).exists():
        raise CaError(
            f"{out} has no pending intermediate key ({PENDING_KEY})",
            hint=f"run gossamer certs intermediate-csr --out {out} on this host first, and "
            "sign the CSR it writes",
        )
    key = load_key(out / PENDING_KEY)
    der, spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(der, spki) != cert.public_key().public_bytes(der, spki):
        raise CaError(
            f"the signed intermediate is not for the key in {out / PENDING_KEY}",
            hint="sign the CSR this directory made (intermediate.csr), then install again",
        )
    with locked(out / ".lock"):
        state = _read_state(out)
        if state and state.get("trust_domain") != trust_domain:
            raise CaError(
                f"{out} is a replica of trust domain {state.get('trust_domain')}, "
                f"the intermediate is for {trust_domain}"
            )
        held = {int(n) for n in state.get("generations", ())} if state else set()
        generations = sorted(n for n in held | {number} if n in roots)
        for n, root in roots.items():
            atomic_write(out / f"root-{n}.pem", _pem(root))
        atomic_write(out / f"intermediate-{number}.key", key_to_pem(key), mode=0o600)
        atomic_write(out / f"intermediate-{number}.pem", _pem(cert))
        atomic_write(out / CHAIN_FILE, _pem(cert) + _pem(roots[number]))
        atomic_write(out / BUNDLE_FILE, b"".join(_pem(roots[n]) for n in sorted(roots)))
        for gone in held - set(generations):
            for suffix in (".pem", ".key"):
                (out / f"intermediate-{gone}{suffix}").unlink(missing_ok=True)
        active = max(number, int(state.get("active", 0)) if state else 0)
        if active not in generations:
            active = max(generations)
        # a fresh root is issued from after the root host's propagation delay
        since = float(signed.get("active_from", 0.0) if active == number else state["active_from"])
        body = {
            "trust_domain": trust_domain,
            "replica": name,
            "generations": generations,
            "roots": sorted(roots),
            "active": active,
            "active_from": since,
        }
        atomic_write(out / STATE_FILE, json.dumps(body, indent=2) + "\n")
        (out / PENDING_KEY).unlink(missing_ok=True)
        (out / CSR_FILE).unlink(missing_ok=True)
    return CertificateAuthority.load(out)


def _read_state(out: Path) -> dict[str, Any]:
    try:
        raw = json.loads((out / STATE_FILE).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise CaError(f"cannot read {out / STATE_FILE}: {exc}") from None
    return raw if isinstance(raw, dict) else {}


def issue_local(
    ca: CertificateAuthority, out: Path, name: str, *, ttl: float | None = None
) -> CertificateAuthority:
    """The one-command form on the root's host: request, sign and install in `out`."""
    if out.resolve() == ca.directory.resolve():
        raise CaError(
            "--out is the root CA's own directory",
            hint="give the replica a directory of its own, e.g. --out ./replica-ca",
        )
    csr = request(out, name)
    return install(out, sign(ca, csr, ttl=ttl))


def read_signed(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text())
    except OSError as exc:
        raise CaError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError:
        raise CaError(f"{path} is not a signed intermediate (not JSON)") from None
    if not isinstance(raw, dict):
        raise CaError(f"{path} is not a signed intermediate")
    return raw
