"""The control plane's security pieces, assembled: CA, join tokens, its own TLS
certificate, the identity and registration services, and peer identification.

Revocation (docs/architecture.md, "Identity"): the revocation list and the leaf
lineage live in the data directory (control/revocations.py, control/lineage.py); the
CRLs made from them go out with the trust bundle (`crl_pem`, control/crls.py). gRPC's
server credentials take no CRL, so every call on the mTLS port checks the caller's leaf
serial here: a revoked caller gets PERMISSION_DENIED from Certify (so it cannot renew
itself into a fresh leaf), Registration and ADS (`identify` raises). Long-lived calls
(ADS and Registration streams) are remembered with their caller's serial, and
`cut_revoked` ends those of a newly revoked caller: its configuration stops, its
endpoint is deregistered (peers refuse its leaf anyway) and its reconnection is refused.
Every issued leaf is recorded with the join token it descends from and, for a renewal,
the caller's leaf it renews (`_certify`): revoking a serial also revokes the leaves
renewed from it (control/revocation_api.py). A renewal that races with the revocation
of the caller's leaf (revoked while the new leaf was being signed) gets its new leaf
revoked too and is refused.

Join tokens, the revocation list, the trust bundle and the CRLs are what replicas
share (control/shared_security.py: files, or etcd with `control.store: etcd://`).

Created at start from mesh.yaml's `trust_domain` and `control.ca_dir`: the root CA's
directory, or a replica's intermediate-only one (certs/intermediates.py), which signs
with that replica's own intermediate. If the directory holds no CA yet one is created
(as istiod makes a self-signed root) and its pin logged;
a CA of another trust domain is a configuration error.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509

from gossamer.certs.builders import utcnow
from gossamer.certs.ca import CertificateAuthority
from gossamer.certs.ca_reload import CaReloader
from gossamer.certs.crl import format_serial
from gossamer.certs.errors import CaNotFound, TokenError
from gossamer.certs.token_rules import parse_token
from gossamer.contract import grpcio_calls as calls
from gossamer.contract import mesh_pb2
from gossamer.errors import AuthorizationDenied, ConfigError, GossamerError
from gossamer.logs import event

from .audit import AuditLog
from .crls import CrlSigner
from .identity import MAX_TTL, IdentityService
from .lineage import LeafLineage
from .peer import peer_certificate, peer_identity
from .registration import Registrar, RegistrationService
from .revocations import CUT_MESSAGE, cut_for_revocation
from .server_certs import ServerCertificates
from .shared_security import LocalSecurity, SharedSecurity
from .tap_hub import TapHub

log = logging.getLogger("gossamer.control.security")


class MeshSecurity:
    def __init__(
        self,
        ca_dir: Path,
        trust_domain: str,
        registrar: Registrar,
        lease_ttl: float,
        audit: AuditLog | None = None,
        *,
        max_token_ttl: float | None = None,
        max_cert_ttl: float = MAX_TTL,
        data_dir: Path | None = None,
        shared: SharedSecurity | None = None,
    ):
        try:
            self.ca = CaReloader(ca_dir)
        except CaNotFound:
            created = CertificateAuthority.init(ca_dir, trust_domain)
            event(
                log,
                logging.WARNING,
                "no CA found: created a new one",
                ca_dir=str(ca_dir),
                root_pin=created.root_pin(),
            )
            self.ca = CaReloader(ca_dir)
        loaded = self.ca.get()
        if loaded.replica:
            event(log, logging.INFO, "signing with this replica's own intermediate (no root "
                  "key here)", replica=loaded.replica, ca_dir=str(ca_dir),
                  generations=[g.number for g in loaded.generations])  # fmt: skip
        actual = loaded.trust_domain
        if actual != trust_domain:
            raise ConfigError(
                f"the CA in {ca_dir} is for trust domain {actual}, mesh.yaml says {trust_domain}",
                field="trust_domain",
                hint="point control.ca_dir at this mesh's CA, or fix trust_domain",
            )
        self.trust_domain = trust_domain
        records = data_dir if data_dir is not None else ca_dir.parent / "data"
        # join tokens, revocations, bundle and CRLs: files, or etcd shared by replicas
        self.shared = shared or LocalSecurity(ca_dir, records, max_token_ttl=max_token_ttl)
        self.server_certs = ServerCertificates(self.ca.get, bundle=self.trust_bundle)
        self.issued = 0
        self._audit = audit
        self.identity = IdentityService(
            self.ca.get, self.shared.redeem, trust_bundle=self.trust_bundle,
            max_ttl=max_cert_ttl, on_issue=self._count,
        )  # fmt: skip
        self.registration = RegistrationService(registrar, trust_domain, lease_ttl=lease_ttl)
        self.tap_hub = TapHub(trust_domain)  # sidecars' Tap streams (control/tap_hub.py)
        self.revocations = self.shared.revocations
        self._tokens_followed: set[str] = set()  # token_leaves_revoked already applied
        self._serials_followed: set[str] = set()  # revocations whose local descendants
        # were revoked too (another replica's revocation may miss them)
        self.lineage = LeafLineage(records)
        self.max_cert_ttl = max_cert_ttl
        self.crls = CrlSigner(self.ca.get, self.revocations, max_cert_ttl=max_cert_ttl)
        # the tasks serving ADS and Registration streams -> their caller's leaf serial
        self._calls: weakref.WeakKeyDictionary[asyncio.Task[Any], int] = weakref.WeakKeyDictionary()

    def _count(self, spiffe_id: str, mode: str) -> None:
        self.issued += 1
        if self._audit is not None:  # who asked is the identity the certificate names
            self._audit.record(
                spiffe_id, "workload", "issue certificate", spiffe_id, "ok", mode=mode
            )

    def trust_bundle(self) -> bytes:
        return self.shared.trust_bundle(self.ca.get())

    def crl_pem(self) -> bytes:
        """One CRL per issuer, concatenated PEM: this replica's (signed again only when
        due) and, with a shared store, every other replica's."""
        self.crls.current()
        return self.shared.crls(self.crls.by_issuer, utcnow())

    async def follow_token_revocations(self) -> int:
        """Revoke the leaves this replica issued from tokens another replica revoked
        with their leaves, and those it renewed from leaves another replica revoked (a
        shared store only); how many were new."""
        new = 0
        for token_id, by in self.shared.token_leaves_revoked().items():
            if token_id in self._tokens_followed:
                continue
            leaves = self.lineage.leaves_of(token_id)
            wanted = [(v.serial_number, v.not_after, v.spiffe_id, token_id) for v in leaves]
            done = await self.revocations.add(
                wanted, reason=f"join token {token_id} revoked", by=by
            )
            self._tokens_followed.add(token_id)
            new += sum(1 for _, fresh in done if fresh)
        if self.shared.between_replicas:
            new += await self._follow_descendants()
        return new

    async def _follow_descendants(self) -> int:
        """Revoke the leaves this replica renewed from a leaf another replica revoked
        (a sidecar that moved here and renewed: the revoking replica's lineage does not
        know the renewal); how many were new."""
        new = 0
        entries = self.revocations.list()
        self._serials_followed &= {e.serial for e in entries}  # expired ones go
        for entry in entries:
            if entry.serial in self._serials_followed:
                continue
            leaves = self.lineage.descendants(entry.serial_number)
            wanted = [(v.serial_number, v.not_after, v.spiffe_id, v.token_id) for v in leaves]
            if wanted:
                done = await self.revocations.add(
                    wanted, reason=f"renewed from revoked certificate {entry.serial}",
                    by=entry.by,
                )  # fmt: skip
                new += sum(1 for _, fresh in done if fresh)
            self._serials_followed.add(entry.serial)
        return new

    async def publish(self) -> None:
        """Share this replica's CRLs (and, on the root's host, the bundle)."""
        self.crls.current()
        await self.shared.publish(self.ca.get(), self.crls.by_issuer)

    # -- revoked callers ---------------------------------------------------------------
    def revoked_caller(self, context: Any) -> str | None:
        """Why the caller may not be served (its leaf is revoked), else None."""
        cert = peer_certificate(context)
        if cert is None or not self.revocations.is_revoked(cert.serial_number):
            return None
        return f"certificate {format_serial(cert.serial_number)} has been revoked"

    def _follow(self, context: Any) -> None:
        """Remember the current call's task and caller serial (see `cut_revoked`)."""
        cert = peer_certificate(context)
        task = asyncio.current_task()
        if cert is not None and task is not None:
            self._calls[task] = cert.serial_number

    def cut_revoked(self) -> int:
        """End the open ADS and Registration calls of revoked callers; how many."""
        cut = 0
        for task, serial in list(self._calls.items()):
            if not task.done() and self.revocations.is_revoked(serial):
                task.cancel(CUT_MESSAGE)  # the handler ends the call with PERMISSION_DENIED
                cut += 1
        return cut

    async def _refuse_revoked(self, context: Any) -> None:
        why = self.revoked_caller(context)
        if why is not None:
            event(log, logging.WARNING, "revoked certificate refused", peer=context.peer(),
                  reason=why)  # fmt: skip
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, why)

    async def _certify(
        self, request: mesh_pb2.CertifyRequest, context: Any
    ) -> mesh_pb2.CertifyResponse:
        """Certify, refusing a revoked caller, and record the new leaf's lineage."""
        await self._refuse_revoked(context)
        caller = peer_certificate(context)
        reply = await self.identity.certify(request, context)
        token_id, parent = "", 0
        if request.token:
            try:
                token_id = parse_token(request.token).token_id
            except TokenError:
                token_id = ""
        elif caller is not None:
            token_id = self.lineage.token_of(caller.serial_number)
            parent = caller.serial_number
        leaf = x509.load_pem_x509_certificate(bytes(reply.cert_chain))
        not_after = float(reply.not_after_unix)
        try:
            self.lineage.record(
                leaf.serial_number, token_id, reply.spiffe_id, not_after, parent=parent
            )
        except OSError as exc:  # the leaf is issued: the caller gets it all the same
            event(log, logging.ERROR, "cannot record the leaf's lineage", error=str(exc),
                  serial=format_serial(leaf.serial_number))  # fmt: skip
        if parent and self.revocations.is_revoked(parent):
            # revoked while its renewal was being signed: the revocation did not see the
            # new leaf in the lineage, so it is revoked here (the CRLs follow within a
            # second: the ca-watcher sees the list change)
            why = f"certificate {format_serial(parent)} has been revoked"
            try:
                await self.revocations.add(
                    [(leaf.serial_number, not_after, reply.spiffe_id, token_id)],
                    reason=f"renewed from revoked certificate {format_serial(parent)}",
                    by="control-plane",
                )
            except (OSError, GossamerError) as exc:
                event(log, logging.ERROR, "cannot revoke a leaf renewed from a revoked one",
                      serial=format_serial(leaf.serial_number), error=str(exc))  # fmt: skip
            event(log, logging.WARNING, "revoked certificate refused", peer=context.peer(),
                  reason=why)  # fmt: skip
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, why)
        return reply

    async def _register(self, requests: Any, context: Any) -> Any:
        await self._refuse_revoked(context)
        self._follow(context)
        try:
            async for reply in self.registration.register(requests, context):
                yield reply
        except asyncio.CancelledError as exc:
            if cut_for_revocation(exc):
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, CUT_MESSAGE)
            raise

    async def _tap(self, reports: Any, context: Any) -> Any:
        await self._refuse_revoked(context)
        self._follow(context)
        try:
            async for command in self.tap_hub.watch(reports, context):
                yield command
        except asyncio.CancelledError as exc:
            if cut_for_revocation(exc):
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, CUT_MESSAGE)
            raise

    def ca_stamp(self) -> tuple[object, object]:
        """Changes when the CA directory or the shared bundle or CRLs do."""
        return (self.ca.get().fingerprint(), self.shared.stamp())

    def identify(self, context: Any) -> str | None:
        """The caller's SPIFFE ID; AuthorizationDenied if its leaf is revoked."""
        why = self.revoked_caller(context)
        if why is not None:
            event(log, logging.WARNING, "revoked certificate refused", peer=context.peer(),
                  reason=why, call="ADS")  # fmt: skip
            raise AuthorizationDenied(why)
        self._follow(context)
        sid = peer_identity(context, self.trust_domain)
        return None if sid is None else sid.uri

    def add_identity(self, server: grpc.aio.Server) -> None:
        server.add_generic_rpc_handlers([calls.identity_handler(self._certify)])

    def add_registration(self, server: grpc.aio.Server) -> None:
        server.add_generic_rpc_handlers([calls.registration_handler(self._register)])

    def add_tap(self, server: grpc.aio.Server) -> None:
        server.add_generic_rpc_handlers([calls.tap_handler(self._tap)])

    def bootstrap_credentials(self) -> grpc.ServerCredentials:
        return self.server_certs.credentials(require_client_auth=False)

    def mtls_credentials(self) -> grpc.ServerCredentials:
        return self.server_certs.credentials(require_client_auth=True)
