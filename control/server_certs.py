"""The control plane's own TLS: a server certificate from the mesh CA, kept fresh.

Two listeners use it: the bootstrap port (server-authenticated TLS: new sidecars present
a join token, not a certificate) and the xDS port (mutual TLS). Credentials are gRPC's
dynamic SSL credentials: before each handshake gRPC asks `fetch()` whether the
certificate or the trust bundle changed, so a renewed server certificate or a rotated
root takes effect for new connections without a restart.

The certificate comes from the CA's anchor generation (the oldest trusted root, which
every sidecar trusts during a root rotation), and the chain the server sends ends with
that root, so a bootstrapping sidecar can find the root its join token pins (tokens pin
the anchor) and then verify the handshake against it.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # grpc is imported where used (this module is light to import)
    import grpc

from gossamer.certs.builders import utcnow
from gossamer.certs.ca import CertificateAuthority
from gossamer.certs.rotation import renewal_time
from gossamer.certs.spiffe import SpiffeId
from gossamer.contract.identity import CONTROL_NAMESPACE, CONTROL_SERVICE, CONTROL_TLS_NAME

log = logging.getLogger("gossamer.control.server_certs")

__all__ = ["CONTROL_TLS_NAME", "ServerCertificates"]


class ServerCertificates:
    """Issues and renews the control plane's certificate; builds gRPC credentials."""

    def __init__(
        self,
        ca: Callable[[], CertificateAuthority],
        *,
        dns_names: tuple[str, ...] = (CONTROL_TLS_NAME, "localhost"),
        ttl: float = 24 * 3600.0,
        clock: Callable[[], dt.datetime] = utcnow,
        bundle: Callable[[], bytes] | None = None,
    ) -> None:
        self._ca = ca
        # the roots callers are verified against: the CA's, or the replicas' shared ones
        self._trusted = bundle or (lambda: self._ca().trust_bundle_pem())
        self._dns = dns_names
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._key = b""
        self._chain = b""
        self._bundle = b""
        self._renew_at = clock()
        self._generation = 0
        self._served: dict[int, int] = {}
        self.refresh()

    def refresh(self) -> bool:
        """Reissue if due or if the CA's trust bundle changed; True if anything changed."""
        ca = self._ca()
        bundle = self._trusted()
        with self._lock:
            if bundle == self._bundle and self._clock() < self._renew_at and self._key:
                return False
            sid = SpiffeId(ca.trust_domain, CONTROL_NAMESPACE, CONTROL_SERVICE)
            key, issued = ca.issue_server_certificate(
                sid, dns_names=self._dns, ip_addresses=("127.0.0.1",), ttl=self._ttl
            )
            root_pem = ca.anchor_root_pem()
            self._key, self._chain, self._bundle = key, issued.chain_pem + root_pem, bundle
            self._renew_at = renewal_time(issued.not_before, issued.not_after)
            self._generation += 1
            log.info(
                "control-plane certificate issued",
                extra={"fields": {"spiffe_id": sid.uri, "not_after": issued.not_after.isoformat()}},
            )
            return True

    @property
    def trust_bundle_pem(self) -> bytes:
        return self._bundle

    def _configuration(self) -> Any:
        import grpc

        return grpc.ssl_server_certificate_configuration(
            [(self._key, self._chain)], root_certificates=self._bundle
        )

    def credentials(self, *, require_client_auth: bool) -> grpc.ServerCredentials:
        """Dynamic credentials for one port; each port tracks what it has served."""
        port_id = len(self._served)
        self._served[port_id] = self._generation

        def fetch() -> Any:
            try:
                self.refresh()
            except Exception:  # keep serving the current certificate; log why
                log.exception("control-plane certificate refresh failed")
            with self._lock:
                if self._served[port_id] == self._generation:
                    return None
                self._served[port_id] = self._generation
                return self._configuration()

        import grpc

        with self._lock:
            initial = self._configuration()
        return grpc.dynamic_ssl_server_credentials(
            initial, fetch, require_client_authentication=require_client_auth
        )
