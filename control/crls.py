"""The CRLs the control plane pushes with the trust bundle, signed again when due.

`CrlSigner.current()` returns one PEM CRL per trusted CA generation (each signed by that
generation's intermediate, the issuer of its leaves; certs/crl.py), concatenated; an
empty CRL per issuer when nothing is revoked, so a sidecar can always require one
(OpenSSL's leaf CRL check fails a handshake whose issuer has no CRL). The result is
cached and rebuilt only when

- the revocation list changes (this process or another writing the data directory),
- the CA changes (a root rotated in or retired: another issuer),
- or a new signing period starts (every half of the CRLs' validity; `due()`, polled
  every second by the control plane next to the CA watch).

The bytes depend only on those inputs (certs/crl.py `crl_times`, deterministic ECDSA),
not on when or by which replica they are signed, so the ROOTCA secret's version (a hash
of its content) changes exactly when its content must, and replicas sharing the CA and
the data directory serve the same version. Replicas with their own intermediates
(etcd store) each sign the CRLs of their own issuers (`by_issuer`) and publish them
for the others (control/etcd_security.py). Entries of leaves that expired before the
period started are left out and pruned from the list; pruning is best effort (a list
that cannot be written, or read: control/revocations.py), the CRLs are signed anyway.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable

from gossamer.certs import crl
from gossamer.certs.ca import CertificateAuthority
from gossamer.errors import GossamerError
from gossamer.logs import event

from .revocations import RevocationReader

log = logging.getLogger("gossamer.control.crls")

Key = tuple[object, object, float]


class CrlSigner:
    def __init__(
        self,
        ca: Callable[[], CertificateAuthority],
        revocations: RevocationReader,
        *,
        max_cert_ttl: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._ca = ca
        self._revocations = revocations
        self.validity = crl.validity_for(max_cert_ttl)
        self._clock = clock
        self._pem = b""
        self.by_issuer: dict[str, bytes] = {}  # issuer id (crl.issuer_id) -> its CRL, PEM
        self._key: Key | None = None
        self.signings = 0

    def _inputs(self) -> Key:
        period = crl.period_start(self._clock(), self.validity)
        return (self._revocations.stamp(), self._ca().fingerprint(), period)

    def due(self) -> bool:
        """True when `current()` would sign again (inputs changed, or a new period)."""
        return self._key != self._inputs()

    def current(self) -> bytes:
        """The concatenated PEM CRLs, signed again only when `due()`."""
        if self.due():
            period = crl.period_start(self._clock(), self.validity)
            try:
                self._revocations.prune(before=period)
            except (OSError, GossamerError) as exc:  # best effort: sign what is there
                event(log, logging.WARNING, "cannot prune expired revocations; signing the "
                      "CRLs with them", error=getattr(exc, "message", None) or str(exc))  # fmt: skip
            key = self._inputs()  # pruning may rewrite the file
            self.by_issuer = self._sign(period)
            self._pem = b"".join(self.by_issuer[k] for k in sorted(self.by_issuer))
            self._key = key
            self.signings += 1
        return self._pem

    def _sign(self, period: float) -> dict[str, bytes]:
        now = dt.datetime.fromtimestamp(self._clock(), dt.UTC)
        entries = [
            crl.RevokedSerial(
                e.serial_number, dt.datetime.fromtimestamp(e.revoked_at, dt.UTC), e.reason
            )
            for e in self._revocations.list(at=period)
        ]
        return {
            crl.issuer_id(issuer): crl.crls_pem(
                [crl.build_crl(issuer, key, entries, validity=self.validity, now=now)]
            )
            for issuer, key in self._ca().issuers()
        }
