"""Describe certificates for people: subject, SPIFFE ID, validity, time left, issuer chain."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from gossamer.certs.builders import spki_pin, utcnow
from gossamer.certs.errors import CaError
from gossamer.certs.spiffe import spiffe_ids_of


def load_pem_chain(data: bytes) -> list[x509.Certificate]:
    """Every certificate in a PEM file, in order; an error if there is none."""
    try:
        certs = x509.load_pem_x509_certificates(data)
    except (ValueError, x509.InvalidVersion):  # InvalidVersion is no ValueError
        raise CaError(
            "no PEM certificate found in the file",
            hint="pass a file with -----BEGIN CERTIFICATE----- blocks",
        ) from None
    return certs


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def describe(cert: x509.Certificate, now: dt.datetime | None = None) -> dict[str, Any]:
    current = now or utcnow()
    left = cert.not_valid_after_utc - current
    spiffe = spiffe_ids_of(cert)
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "spiffe_id": spiffe[0] if len(spiffe) == 1 else (spiffe or None),
        "serial": format(cert.serial_number, "x"),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "seconds_left": int(left.total_seconds()),
        "expired": left.total_seconds() <= 0,
        "ca": _is_ca(cert),
        "key_pin": spki_pin(cert),
    }


def describe_chain(data: bytes, now: dt.datetime | None = None) -> dict[str, Any]:
    """Each certificate described, plus whether each one is issued by the next."""
    certs = load_pem_chain(data)
    links = []
    for child, parent in itertools.pairwise(certs):
        try:
            child.verify_directly_issued_by(parent)
            links.append(True)
        except (ValueError, TypeError, InvalidSignature):
            links.append(False)
    return {
        "certificates": [describe(c, now) for c in certs],
        "chain_links_ok": all(links),
    }


def human_duration(seconds: int) -> str:
    if seconds <= 0:
        return "expired"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes}m"
    return f"{minutes}m"
