"""Keep a CA directory's `CertificateAuthority` current while another process changes it.

The control plane signs with the CA of its directory; `gossamer certs rotate` (another
process) may add a generation at any time. `CaReloader.get()` notices by the directory's
fingerprint (one stat() when nothing changed, so callers may use it per request) and
loads the new state.
"""

from __future__ import annotations

from pathlib import Path

from gossamer.certs.ca import CertificateAuthority


class CaReloader:
    """The CA of a directory, reloaded when another process rotates or re-creates it."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._ca = CertificateAuthority.load(self.directory)
        self._stamp = self._ca.fingerprint()

    def get(self) -> CertificateAuthority:
        try:
            stamp = self._ca.fingerprint()
        except OSError:
            return self._ca
        if stamp != self._stamp:
            self._ca = CertificateAuthority.load(self.directory)
            self._stamp = stamp
        return self._ca
