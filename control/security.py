"""The control plane's security pieces, assembled: CA, join tokens, its own TLS
certificate, the identity and registration services, and peer identification.

Created at start from mesh.yaml's `trust_domain` and `control.ca_dir`. If the directory
holds no CA yet one is created (as istiod makes a self-signed root) and its pin logged;
a CA of another trust domain is a configuration error.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import grpc

from gossamer.certs.ca import CaReloader, CertificateAuthority
from gossamer.certs.errors import CaNotFound
from gossamer.certs.tokens import TokenStore
from gossamer.contract import grpcio_calls as calls
from gossamer.errors import ConfigError
from gossamer.logs import event

from .audit import AuditLog
from .identity import MAX_TTL, IdentityService
from .peer import peer_identity
from .registration import Registrar, RegistrationService
from .server_certs import ServerCertificates

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
        actual = self.ca.get().trust_domain
        if actual != trust_domain:
            raise ConfigError(
                f"the CA in {ca_dir} is for trust domain {actual}, mesh.yaml says {trust_domain}",
                field="trust_domain",
                hint="point control.ca_dir at this mesh's CA, or fix trust_domain",
            )
        self.trust_domain = trust_domain
        # the API's tokens; the instances they admitted are recorded in the data
        # directory (the CA directory may be a read-only Compose secret)
        self.tokens = TokenStore(ca_dir, max_ttl=max_token_ttl, uses_dir=data_dir)
        self.server_certs = ServerCertificates(self.ca.get)
        self.issued = 0
        self._audit = audit
        self.identity = IdentityService(
            self.ca.get, self.tokens, max_ttl=max_cert_ttl, on_issue=self._count
        )
        self.registration = RegistrationService(registrar, trust_domain, lease_ttl=lease_ttl)

    def _count(self, spiffe_id: str, mode: str) -> None:
        self.issued += 1
        if self._audit is not None:  # who asked is the identity the certificate names
            self._audit.record(
                spiffe_id, "workload", "issue certificate", spiffe_id, "ok", mode=mode
            )

    def trust_bundle(self) -> bytes:
        return self.ca.get().trust_bundle_pem()

    def ca_stamp(self) -> tuple[int, int]:
        return self.ca.get().fingerprint()

    def identify(self, context: Any) -> str | None:
        sid = peer_identity(context, self.trust_domain)
        return None if sid is None else sid.uri

    def add_identity(self, server: grpc.aio.Server) -> None:
        server.add_generic_rpc_handlers([calls.identity_handler(self.identity.certify)])

    def add_registration(self, server: grpc.aio.Server) -> None:
        server.add_generic_rpc_handlers([calls.registration_handler(self.registration.register)])

    def bootstrap_credentials(self) -> grpc.ServerCredentials:
        return self.server_certs.credentials(require_client_auth=False)

    def mtls_credentials(self) -> grpc.ServerCredentials:
        return self.server_certs.credentials(require_client_auth=True)
