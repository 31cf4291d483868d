"""The CRLs the control plane pushes with the trust bundle, signed again when due.

`CrlSigner.current()` returns one PEM CRL per trusted CA generation (each signed by that
generation's intermediate, the issuer of its leaves; certs/crl.py), concatenated; an
empty CRL per issuer when nothing is revoked, so a sidecar can always require one
(OpenSSL's leaf CRL check fails a handshake whose issuer has no CRL). The result is
cached: ECDSA signatures differ every time, and the ROOTCA secret's version is a hash of
its content, so signing again means pushing again. It is rebuilt only when

- the revocation list changes (this process or another writing the data directory),
- the CA changes (a root rotated in or retired: another issuer),
- or `RESIGN_FRACTION` of the CRLs' validity has passed (`due()`, polled every second
  by the control plane next to the CA watch).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

from gossamer.certs import crl
from gossamer.certs.ca import CertificateAuthority

from .revocations import RevocationStore

Key = tuple[object, object]


class CrlSigner:
    def __init__(
        self,
        ca: Callable[[], CertificateAuthority],
        revocations: RevocationStore,
        *,
        max_cert_ttl: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._ca = ca
        self._revocations = revocations
        self.validity = crl.validity_for(max_cert_ttl)
        self._clock = clock
        self._pem = b""
        self._key: Key | None = None
        self._signed_at = 0.0
        self.signings = 0

    def _inputs(self) -> Key:
        return (self._revocations.stamp(), self._ca().fingerprint())

    def due(self) -> bool:
        """True when `current()` would sign again (inputs changed, or half-life passed)."""
        if self._key != self._inputs():
            return True
        age = self._clock() - self._signed_at
        return age >= self.validity.total_seconds() * crl.RESIGN_FRACTION

    def current(self) -> bytes:
        """The concatenated PEM CRLs, signed again only when `due()`."""
        if self.due():
            key = self._inputs()
            self._revocations.prune()
            key = self._inputs()  # pruning rewrites the file
            self._pem = self._sign()
            self._key = key
            self._signed_at = self._clock()
            self.signings += 1
        return self._pem

    def _sign(self) -> bytes:
        now = dt.datetime.fromtimestamp(self._clock(), dt.UTC)
        entries = [
            crl.RevokedSerial(
                e.serial_number, dt.datetime.fromtimestamp(e.revoked_at, dt.UTC), e.reason
            )
            for e in self._revocations.list()
        ]
        return crl.crls_pem(
            [
                crl.build_crl(issuer, key, entries, validity=self.validity, now=now)
                for issuer, key in self._ca().issuers()
            ]
        )
