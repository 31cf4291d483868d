"""The identity service: CSR in, SPIFFE certificate chain out.

Two ways in, decided per call:
- bootstrap: a join token (checked against the token store: scope, expiry, revocation)
  names the service; the caller has no certificate yet (bootstrap port, server-auth TLS);
- renewal: no token, and the caller's verified client certificate (xDS port, mutual TLS)
  names the service.
Either way the issued leaf carries exactly that service's SPIFFE ID, whatever the CSR
asks for: a CSR naming anything else is refused. Tokens never appear in logs.

A bootstrap takes one of the token's uses for the instance id the sidecar sends (the
same instance restarting takes none: `SharedSecurity.redeem`, in files or etcd). A leaf lives `max_ttl`
(mesh.yaml's `control.max_cert_ttl`, 24 h) at most: a longer requested lifetime is cut
to it, not refused, so a sidecar asking too much still starts (logged).

Address SANs (what lets a sidecar register an address other than the one it connects
from: control/addresses.py): a bootstrap leaf carries the IP addresses and host names
its join token allows (`--allow-address`), a renewed leaf exactly those of the current
verified leaf, so a renewal never gains one. A CSR may ask for those and no others
(asking for another is refused, as for DNS names).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from gossamer.certs.ca import CertificateAuthority
from gossamer.certs.errors import CsrError, TokenError
from gossamer.certs.spiffe import SpiffeId
from gossamer.certs.token_rules import TokenRecord
from gossamer.contract import mesh_pb2
from gossamer.contract.identity import is_control_identity
from gossamer.control.addresses import LeafAddresses
from gossamer.control.peer import peer_certificate, peer_identity
from gossamer.errors import GossamerError

log = logging.getLogger("gossamer.control.identity")

DEFAULT_TTL = 24 * 3600.0
MAX_TTL = 24 * 3600.0  # mesh.yaml's control.max_cert_ttl raises it
MIN_TTL = 5.0  # short-lived leaves are asked for only by tests; the default stays 24 h


class IdentityService:
    """Implements gossamer.mesh.v1.Identity/Certify."""

    def __init__(
        self,
        ca: Callable[[], CertificateAuthority],
        redeem: Callable[..., Awaitable[TokenRecord]],
        *,
        trust_bundle: Callable[[], bytes] | None = None,
        default_ttl: float = DEFAULT_TTL,
        max_ttl: float = MAX_TTL,
        on_issue: Callable[[str, str], None] | None = None,
    ) -> None:
        self._ca = ca
        self._redeem = redeem  # control/shared_security.py SharedSecurity.redeem
        self._bundle = trust_bundle or (lambda: self._ca().trust_bundle_pem())
        self._default_ttl = min(default_ttl, max_ttl)
        self._max_ttl = max_ttl
        self._on_issue = on_issue

    def _ttl(self, requested: int) -> float:
        if requested <= 0:
            return self._default_ttl
        if requested > self._max_ttl:
            log.warning(
                "requested certificate lifetime cut to the cap (control.max_cert_ttl)",
                extra={"fields": {"requested_s": requested, "cap_s": int(self._max_ttl)}},
            )
        return min(max(float(requested), MIN_TTL), self._max_ttl)

    async def certify(
        self, request: mesh_pb2.CertifyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> mesh_pb2.CertifyResponse:
        ca = self._ca()
        mode = "renewal"
        addresses: tuple[str, ...] = ()
        if request.token:
            mode = "bootstrap"
            try:
                record = await self._redeem(
                    request.token,
                    instance=request.instance_id,
                    service=request.service or None,
                    namespace=request.namespace or None,
                )
            except TokenError as exc:
                log.warning(
                    "join token refused",
                    extra={"fields": {"reason": type(exc).__name__, "service": request.service}},
                )
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, exc.message)
                raise AssertionError("unreachable") from None
            identity = SpiffeId(ca.trust_domain, record.namespace, record.service)
            addresses = record.addresses
        else:
            peer = peer_identity(context, ca.trust_domain)
            if peer is None:
                await context.abort(
                    grpc.StatusCode.UNAUTHENTICATED,
                    "a join token or a current mesh certificate is required",
                )
                raise AssertionError("unreachable")
            identity = peer
            addresses = LeafAddresses.of(peer_certificate(context)).all()
        if is_control_identity(identity.namespace, identity.service):
            # only ServerCertificates issues it, straight from the CA, never through here
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                "the control plane's own identity is never issued to a caller",
            )
            raise AssertionError("unreachable")
        try:
            issued = ca.issue(
                request.csr, identity, self._ttl(request.ttl_seconds), addresses=addresses
            )
        except CsrError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, exc.message)
            raise AssertionError("unreachable") from None
        except GossamerError as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, exc.message)
            raise AssertionError("unreachable") from None
        log.info(
            "certificate issued",
            extra={
                "fields": {
                    "spiffe_id": issued.spiffe_id,
                    "mode": mode,
                    "serial": format(issued.serial, "x"),
                    "not_after": issued.not_after.isoformat(),
                }
            },
        )
        if self._on_issue is not None:
            self._on_issue(issued.spiffe_id, mode)
        return mesh_pb2.CertifyResponse(
            cert_chain=issued.chain_pem,
            trust_bundle=self._bundle(),
            not_after_unix=int(issued.not_after.timestamp()),
            spiffe_id=issued.spiffe_id,
        )
