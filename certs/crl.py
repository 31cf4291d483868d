"""Certificate revocation lists for the mesh CA (no file I/O): serials, building, parsing.

Theory of operation (docs/architecture.md, "Identity"):

- A leaf is named by its serial number, written in hex (`format(serial, "x")`, as the
  control plane logs it; `openssl x509 -serial` prints the same digits in upper case,
  and colons between byte pairs are accepted). `parse_serial` turns an operator's text
  into the integer or raises a ConfigError saying what is wrong.
- One CRL per issuer (RFC 5280 §5): a leaf is signed by its generation's intermediate,
  so each intermediate signs a CRL naming every revoked serial. Listing a serial in the
  CRL of an issuer that never issued it is harmless (OpenSSL looks a serial up only in
  the CRL of the certificate's own issuer), and it spares the control plane from knowing
  which generation issued each leaf. The CRLs are concatenated, PEM.
- Every control-plane replica signs the same bytes from the same inputs, so a sidecar
  moving between replicas is sent nothing new (the ROOTCA version is a content hash):
  times come from `crl_times` (below), not the moment of signing, and ECDSA signatures
  are deterministic (RFC 6979). Each CRL carries its CRL number (§5.2.3: `this_update`
  in seconds since the epoch, which grows with every change) and the issuer's key
  identifier (§5.2.1: OpenSSL matches a CRL to its issuer by name and this).
- `crl_times`: CRLs are signed per period of half their validity (`RESIGN_FRACTION`):
  `next_update` is the period's start plus the validity, so a CRL in use is always at
  least half its validity from expiring; a peer holding an expired CRL refuses every
  handshake of that issuer (OpenSSL's "CRL has expired"). `this_update` is the period's
  start, or the latest revocation in it, backdated by `builders.BACKDATE` for clock skew
  (a CRL "not yet valid" would fail handshakes too). The entries are those whose leaves
  had not expired at the period's start, so nothing changes within a period but
  additions.
- `validity_for(max_cert_ttl)`: a sidecar cut off from the control plane keeps its last
  CRL; no leaf outlives the last one it got if the CRL lives at least twice the longest
  leaf lifetime (leaves issued until the control plane went away live one more
  `max_cert_ttl`, and the CRL it holds was signed at most half its validity earlier).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from gossamer.certs.builders import BACKDATE, authority_key_id, utcnow
from gossamer.errors import ConfigError

MAX_SERIAL_BITS = 160  # RFC 5280 §4.1.2.2: at most 20 octets
RESIGN_FRACTION = 0.5  # sign again once half of a CRL's validity has passed
MIN_VALIDITY = dt.timedelta(hours=1)
PEM_BEGIN = b"-----BEGIN X509 CRL-----"
PEM_END = b"-----END X509 CRL-----"
_SERIAL = re.compile(r"^(?:0x)?([0-9a-f]+)$")

REASONS = {
    "unspecified": x509.ReasonFlags.unspecified,
    "key_compromise": x509.ReasonFlags.key_compromise,
    "affiliation_changed": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessation_of_operation": x509.ReasonFlags.cessation_of_operation,
}


def parse_serial(text: object) -> int:
    """A leaf serial from its hex form (`1a2b...`, `0x1A2B...`, `1a:2b:...`)."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(
            f"a certificate serial is a hex string, got {text!r}",
            field="serial",
            hint="gossamer certs inspect CERT.pem and the control plane's "
            "`certificate issued` log lines show serials",
        )
    cleaned = text.strip().lower().replace(":", "")
    match = _SERIAL.match(cleaned)
    if match is None:
        raise ConfigError(
            f"{text!r} is not a certificate serial: expected hex digits (0-9, a-f)",
            field="serial",
            hint="gossamer certs inspect CERT.pem shows a certificate's serial",
        )
    serial = int(match.group(1), 16)
    if serial <= 0 or serial.bit_length() > MAX_SERIAL_BITS:
        raise ConfigError(
            f"{text!r} is not a certificate serial: it must be positive and at most "
            f"{MAX_SERIAL_BITS // 4} hex digits",
            field="serial",
        )
    return serial


def format_serial(serial: int) -> str:
    return format(serial, "x")


def reason_flag(reason: str) -> x509.ReasonFlags | None:
    """The CRL reason code for a reason word (None: free text, no code)."""
    return REASONS.get(reason.strip().lower().replace("-", "_").replace(" ", "_"))


def validity_for(max_cert_ttl: float) -> dt.timedelta:
    """How long each CRL stays valid: twice the longest leaf lifetime, at least an hour."""
    return max(MIN_VALIDITY, dt.timedelta(seconds=2 * max_cert_ttl))


@dataclass(frozen=True)
class RevokedSerial:
    serial: int
    revoked_at: dt.datetime
    reason: str = ""


@dataclass(frozen=True)
class CrlTimes:
    period: float  # start of the signing period, seconds since the epoch
    this_update: dt.datetime
    next_update: dt.datetime
    number: int


def period_start(now: float, validity: dt.timedelta) -> float:
    """The start of the signing period `now` is in (periods of half the validity)."""
    half = validity.total_seconds() * RESIGN_FRACTION
    return (now // half) * half


def crl_times(now: float, validity: dt.timedelta, revoked_at: Iterable[float]) -> CrlTimes:
    """The times of a CRL signed at `now` (see the module docstring)."""
    start = period_start(now, validity)
    latest = max((t for t in revoked_at if start <= t <= now), default=start)
    stamp = int(latest)
    return CrlTimes(
        period=start,
        this_update=dt.datetime.fromtimestamp(stamp, dt.UTC) - BACKDATE,
        next_update=dt.datetime.fromtimestamp(start, dt.UTC) + validity,
        number=stamp,
    )


def build_crl(
    issuer: x509.Certificate,
    key: CertificateIssuerPrivateKeyTypes,
    revoked: Iterable[RevokedSerial],
    *,
    validity: dt.timedelta,
    now: dt.datetime | None = None,
) -> x509.CertificateRevocationList:
    """One CRL signed by `issuer` listing `revoked` (sorted by serial), with the times
    `crl_times` gives for `now`; the same inputs give the same bytes."""
    entries = sorted(revoked, key=lambda e: e.serial)
    current = (now or utcnow()).timestamp()
    times = crl_times(current, validity, (e.revoked_at.timestamp() for e in entries))
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(times.this_update)
        .next_update(times.next_update)
        .add_extension(x509.CRLNumber(times.number), critical=False)
        .add_extension(authority_key_id(issuer), critical=False)
    )
    for entry in entries:
        item = (
            x509.RevokedCertificateBuilder()
            .serial_number(entry.serial)
            .revocation_date(min(entry.revoked_at.replace(microsecond=0), times.this_update))
        )
        flag = reason_flag(entry.reason)
        if flag is not None and flag is not x509.ReasonFlags.unspecified:
            item = item.add_extension(x509.CRLReason(flag), critical=False)
        builder = builder.add_revoked_certificate(item.build())
    deterministic = isinstance(key, ec.EllipticCurvePrivateKey)
    return builder.sign(key, hashes.SHA256(), ecdsa_deterministic=deterministic or None)


def crls_pem(crls: Sequence[x509.CertificateRevocationList]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in crls)


def split_pem_crls(data: bytes) -> list[bytes]:
    """The PEM blocks of `data`; ConfigError if anything but CRL blocks is there."""
    blocks: list[bytes] = []
    rest = data.strip()
    while rest:
        if not rest.startswith(PEM_BEGIN):
            raise ConfigError("expected a PEM X509 CRL block (-----BEGIN X509 CRL-----)")
        end = rest.find(PEM_END)
        if end < 0:
            raise ConfigError("a PEM X509 CRL block is not terminated")
        end += len(PEM_END)
        blocks.append(rest[:end] + b"\n")
        rest = rest[end:].strip()
    return blocks


def load_crls(data: bytes) -> list[x509.CertificateRevocationList]:
    """Parse concatenated PEM CRLs; a ConfigError (never another exception) if malformed."""
    out = []
    for block in split_pem_crls(data):
        try:
            crl = x509.load_pem_x509_crl(block)
            crl.next_update_utc  # noqa: B018 - decoding errors surface lazily
            list(crl)  # every entry decodes
            for entry in crl:
                _ = entry.serial_number, entry.extensions
        except (ValueError, TypeError, x509.InvalidVersion) as exc:
            raise ConfigError(f"not a valid X.509 CRL: {exc}") from None
        out.append(crl)
    return out


def revoked_serials(crls: Iterable[x509.CertificateRevocationList]) -> frozenset[int]:
    return frozenset(entry.serial_number for crl in crls for entry in crl)


def issuer_id(issuer: x509.Certificate) -> str:
    """A CA's key identifier in hex: names the CRL of its leaves among replicas'."""
    return authority_key_id(issuer).key_identifier.hex()  # type: ignore[union-attr]


def merge_crls(own: dict[str, bytes], shared: dict[str, bytes], now: dt.datetime) -> bytes:
    """Every issuer's CRL once, PEM, ordered by issuer id: the CRLs this replica just
    signed (`own`) over those replicas published (`shared`, issuer id -> PEM); a shared
    CRL that is malformed or past its next update is left out (its issuer's leaves
    have expired with it, or its replica signs it again when it returns)."""
    merged: dict[str, bytes] = {}
    for key, pem in shared.items():
        try:
            [parsed] = load_crls(pem)
        except (ConfigError, ValueError):
            continue
        due = parsed.next_update_utc
        if due is not None and due > now:
            merged[key] = pem
    merged.update(own)
    return b"".join(merged[k] for k in sorted(merged))
