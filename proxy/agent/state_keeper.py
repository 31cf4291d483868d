"""Keeps a running sidecar's state directory current, and reads it back at start.

    keeper = StateKeeper(path, service, namespace, instance_id)
    found = keeper.load_identity()             # (credentials, crls, received) or None
    keeper.save_identity(creds, crls, received)   # after bootstrap, renewal, new bundle
    keeper.attach(xds_client, restore=True)    # replay the stored configuration, then
    await keeper.run()                         # write accepted resources after each ACK

The files and the checks are state.py's; this module is the agent's side: it turns the
stored identity into `WorkloadCredentials`, replays the stored xDS resources into the
ADS client before it connects (so the sidecar serves at once, and the versions it then
sends are the stored ones: an unchanged configuration is not sent again), and writes
the accepted resources after every ACK, coalesced (at most one write per
`WRITE_DELAY`), off the event loop. A write that fails is logged and retried with the
next change; it never stops the sidecar.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from pathlib import Path

from cryptography import x509

from gossamer.logs import event
from gossamer.proxy.agent.bootstrap import WorkloadCredentials
from gossamer.proxy.agent.state import StateDir, StoredIdentity
from gossamer.proxy.xds.client import XdsClient

log = logging.getLogger("gossamer.proxy.agent.state")

WRITE_DELAY = 1.0  # seconds: a burst of ACKs (CDS, EDS, LDS, RDS, endpoint churn) is one write


class StateKeeper:
    def __init__(self, path: Path, service: str, namespace: str, instance_id: str) -> None:
        self.state = StateDir.open(path)
        self.owner = (service, namespace, instance_id)
        self.writes = 0
        self._xds: XdsClient | None = None
        self._dirty = asyncio.Event()

    # -- identity ----------------------------------------------------------------------
    def load_identity(self) -> tuple[WorkloadCredentials, bytes, dt.datetime] | None:
        stored = self.state.load_identity(*self.owner)
        if stored is None:
            return None
        leaf = x509.load_pem_x509_certificate(stored.chain_pem.encode())
        creds = WorkloadCredentials(
            key_pem=stored.key_pem.encode(),
            chain_pem=stored.chain_pem.encode(),
            bundle_pem=stored.bundle_pem.encode(),
            spiffe_id=stored.spiffe_id,
            not_before=leaf.not_valid_before_utc,
            not_after=leaf.not_valid_after_utc,
        )
        received = dt.datetime.fromtimestamp(stored.received, dt.UTC)
        event(log, logging.INFO, "identity restored from the state directory",
              spiffe_id=stored.spiffe_id, not_after=creds.not_after.isoformat())  # fmt: skip
        return creds, stored.crl_pem.encode(), received

    def save_identity(self, creds: WorkloadCredentials, crl: bytes, received: dt.datetime) -> None:
        service, namespace, instance_id = self.owner
        stored = StoredIdentity(
            service=service,
            namespace=namespace,
            instance_id=instance_id,
            spiffe_id=creds.spiffe_id,
            chain_pem=creds.chain_pem.decode(),
            key_pem=creds.key_pem.decode(),
            bundle_pem=creds.bundle_pem.decode(),
            crl_pem=crl.decode(),
            received=received.timestamp(),
        )
        try:
            self.state.save_identity(stored)
        except OSError as exc:
            event(log, logging.ERROR, "cannot write the state directory", error=str(exc))

    # -- configuration -----------------------------------------------------------------
    def attach(self, xds: XdsClient, *, restore: bool) -> None:
        """Keep `xds`'s accepted resources from now on; first replay the stored ones
        (only when the identity came from the state directory too)."""
        self._xds = xds
        if restore:
            saved = self.state.load_xds(*self.owner)
            if saved:
                complete = xds.restore(saved)
                event(
                    log,
                    logging.INFO if complete else logging.WARNING,
                    "configuration restored from the state directory"
                    if complete
                    else "stored configuration incomplete; waiting for the control plane",
                    versions=xds.applied_versions,
                )
        xds.on_accepted = self._dirty.set

    async def run(self) -> None:
        while True:
            await self._dirty.wait()
            await asyncio.sleep(WRITE_DELAY)
            self._dirty.clear()
            await self.flush()

    async def flush(self) -> None:
        """Write the accepted resources now (if they make a complete configuration)."""
        xds = self._xds
        types = xds.export() if xds is not None else None
        if types is None:
            return
        try:
            await asyncio.to_thread(self.state.save_xds, *self.owner, types)
            self.writes += 1
        except OSError as exc:
            event(log, logging.ERROR, "cannot write the state directory", error=str(exc))
