"""Keep every sidecar's trust current: the bundle, the revocation list and the CRLs.

The control plane's ROOTCA secret carries the trust bundle (every trusted root: two
during a rotation) and the CRLs of every issuing CA. `TrustPusher.watch()` checks once a
second, or at once when a replica sharing the store changed something, and pushes:
- a rotated trust bundle (another process ran `gossamer certs rotate`);
- a changed revocation list, cutting the calls of a caller just revoked;
- CRLs signed again before they expire (control/crls.py), and with a shared store this
  replica's CRLs published for the others (control/etcd_security.py).
Nothing a tick raises ends the watch: a watch that died would leave the CRLs unsigned
until they expire, and then every handshake of the mesh fails. Without a CA (`secure=
False`, protocol tests) a loader may still provide the bundle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

from gossamer.logs import event

from .publisher import Publisher
from .security import MeshSecurity

log = logging.getLogger("gossamer.control")

TrustBundleLoader = Callable[[Path], bytes | None]
CA_POLL_SECONDS = 1.0


class TrustPusher:
    def __init__(
        self,
        publisher: Publisher,
        security: Callable[[], MeshSecurity | None],
        loader: TrustBundleLoader | None = None,
    ) -> None:
        self.publisher = publisher
        self._security = security  # the control plane creates its security at start
        self._loader = loader
        self.shared_changed = asyncio.Event()  # the replicas' shared CA state changed

    def refresh_bundle(self) -> None:
        """Give the publisher the bundle and CRLs as they are now."""
        sec = self._security()
        if sec is not None:
            self.publisher.set_trust_bundle(sec.trust_bundle(), sec.crl_pem())
        elif self._loader is not None and self.publisher.mesh is not None:
            self.publisher.set_trust_bundle(self._loader(self.publisher.mesh.control.ca_dir))

    def refresh_revocations(self) -> None:
        """Sign the CRLs again if due and push them (and a changed shared bundle)."""
        sec = self._security()
        if sec is None:
            return
        bundle, crl = self.publisher.trust_material
        self.refresh_bundle()
        cut = sec.cut_revoked()
        new_bundle, new_crl = self.publisher.trust_material
        if bundle is not None and bundle != new_bundle:
            event(log, logging.INFO, "trust bundle changed: pushing it to every sidecar")
        if cut or crl != new_crl:
            event(log, logging.INFO, "revocation list signed: pushing it to every sidecar",
                  revoked=len(sec.revocations.list()), calls_ended=cut)  # fmt: skip

    async def watch(self) -> None:
        """Check and push about once a second, forever; errors are logged once each."""
        sec = self._security()
        assert sec is not None
        stamp = sec.ca_stamp()
        failing = ""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CA_POLL_SECONDS):
                    await self.shared_changed.wait()
            self.shared_changed.clear()
            try:
                stamp = await self._tick(sec, stamp)
            except Exception as exc:  # the watch must outlive any error
                error = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
                if error != failing:
                    event(log, logging.ERROR, "cannot check the CA or sign the CRLs; trying "
                          "again every second", error=error)  # fmt: skip
                failing = error
                continue
            if failing:
                event(log, logging.INFO, "the CA and the CRLs are checked again")
                failing = ""

    async def _tick(self, sec: MeshSecurity, stamp: tuple[object, object]) -> tuple[object, object]:
        """One check; returns the stamp pushed (CA directory, shared state)."""
        await sec.follow_token_revocations()  # another replica revoked a token
        await sec.publish()  # this replica's CRLs; nothing to do without a shared store
        current = sec.ca_stamp()
        if current[0] != stamp[0]:
            # signs the CRLs for the new issuers and also ends the calls of a caller
            # revoked in the same tick
            self.refresh_revocations()  # logs "trust bundle changed" if it did
        elif current != stamp or sec.crls.due():
            self.refresh_revocations()
        return current
