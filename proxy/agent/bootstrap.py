"""A sidecar's first contact with the control plane, and its certificate renewals.

Bootstrap (join token `gst1.<id>.<secret>.<pin>`):
1. Connect to the control plane's bootstrap port with TLS but without verification, only
   to read the certificate chain it presents; find in it the root whose public-key pin
   equals the token's pin. Nothing secret has been sent yet.
2. Open a gRPC channel that verifies the server against that root alone, and send the
   CSR (the key never leaves this process) with the token.
3. Receive the leaf chain and the trust bundle; from now on the sidecar uses mutual TLS.
Renewal sends a new CSR over the mutual-TLS channel, with no token.

With several bootstrap addresses (control-plane replicas), `bootstrap_in_turn` tries
them in order and, once all failed, again after a jittered back-off, until one answers
(the sidecar's and the gateway's agents both start with it).

The calls go through the sidecar's own small gRPC client (transport/grpc_client.py).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gossamer.certs.builders import spki_pin
from gossamer.certs.keys import build_csr, generate_key, key_to_pem
from gossamer.certs.spiffe import SpiffeId
from gossamer.certs.token_rules import parse_token
from gossamer.contract import mesh_pb2
from gossamer.contract.identity import CONTROL_TLS_NAME
from gossamer.contract.rpc import CERTIFY
from gossamer.errors import AuthorizationDenied, ConfigError, GossamerError, UpstreamConnectError
from gossamer.logs import event
from gossamer.proxy.agent.channels import plane_channel, reconnect_delay
from gossamer.proxy.agent.replicas import Address, format_address
from gossamer.proxy.transport.grpc_client import Channel, GrpcError
from gossamer.proxy.transport.tls_contexts import _load_chain

log = logging.getLogger("gossamer.proxy.agent.bootstrap")


def read_token_file(path: Path) -> str:
    """The join token a file holds (stripped); an unreadable file is a ConfigError."""
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the token file {path}: {exc.strerror}") from None


class BootstrapError(GossamerError):
    """The sidecar could not obtain its certificate."""


@dataclass(frozen=True)
class WorkloadCredentials:
    """What a sidecar holds after certification: its key, chain and the trust bundle."""

    key_pem: bytes
    chain_pem: bytes
    bundle_pem: bytes
    spiffe_id: str
    not_before: dt.datetime
    not_after: dt.datetime


def _unverified_chain(tls: ssl.SSLSocket) -> list[bytes]:
    """The DER certificates the server sent (Python 3.13 has this as a public method)."""
    public = getattr(tls, "get_unverified_chain", None)
    if public is not None:
        return [bytes(c) for c in public()]
    raw: Any = tls._sslobj  # type: ignore[attr-defined]
    return [c.public_bytes(ssl._ssl.ENCODING_DER) for c in raw.get_unverified_chain()]  # type: ignore[attr-defined]


def fetch_pinned_root(host: str, port: int, pin: str, *, timeout: float = 5.0) -> bytes:
    """The PEM of the root the server presents whose SPKI pin equals `pin`."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as sock,
            ctx.wrap_socket(sock, server_hostname=CONTROL_TLS_NAME) as tls,
        ):
            chain = _unverified_chain(tls)
    except (OSError, ssl.SSLError) as exc:
        raise UpstreamConnectError(
            f"cannot reach the control plane's bootstrap port {host}:{port}: {exc}",
            hint="check --control / --bootstrap and that `gossamer control` is running",
        ) from None
    for der in chain:
        cert = x509.load_der_x509_certificate(der)
        if spki_pin(cert) == pin:
            return cert.public_bytes(serialization.Encoding.PEM)
    raise AuthorizationDenied(
        f"the control plane at {host}:{port} does not present the CA pinned in the join token",
        hint="the token belongs to another mesh, or the root was rotated: create a new token",
    )


def _credentials(key_pem: bytes, reply: mesh_pb2.CertifyResponse) -> WorkloadCredentials:
    leaf = x509.load_pem_x509_certificate(reply.cert_chain)
    return WorkloadCredentials(
        key_pem=key_pem,
        chain_pem=bytes(reply.cert_chain),
        bundle_pem=bytes(reply.trust_bundle),
        spiffe_id=reply.spiffe_id,
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
    )


def _rpc_error(exc: Any, what: str) -> GossamerError:
    """A failed call (this client's GrpcError or grpcio's AioRpcError) as a GossamerError."""
    code = getattr(exc.code(), "name", str(exc.code()))
    if code in ("PERMISSION_DENIED", "UNAUTHENTICATED"):
        return AuthorizationDenied(f"{what} refused: {exc.details()}")
    if code in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
        return UpstreamConnectError(f"{what} failed, control plane unreachable: {exc.details()}")
    return BootstrapError(f"{what} failed: {exc.details()}")


def _client_context(bundle_pem: bytes) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cadata=bundle_pem.decode("ascii"))
    ctx.set_alpn_protocols(["h2"])
    return ctx  # check_hostname is on: the server's name is CONTROL_TLS_NAME


def mtls_context(current: WorkloadCredentials) -> ssl.SSLContext:
    """Client TLS for the xDS port: our certificate, the trust bundle for the server."""
    ctx = _client_context(current.bundle_pem)
    _load_chain(ctx, current.chain_pem, current.key_pem)
    return ctx


async def _certify(
    channel: Channel, request: mesh_pb2.CertifyRequest, timeout: float, what: str
) -> mesh_pb2.CertifyResponse:
    try:
        raw = await channel.unary(CERTIFY, request.SerializeToString(), timeout=timeout)
    except GrpcError as exc:
        raise _rpc_error(exc, what) from None
    return mesh_pb2.CertifyResponse.FromString(raw)


async def bootstrap(
    host: str,
    port: int,
    token: str,
    service: str,
    namespace: str,
    trust_domain: str | None = None,
    *,
    ttl_seconds: int = 0,
    timeout: float = 10.0,
    instance_id: str = "",
) -> WorkloadCredentials:
    """Get the first certificate with a join token (see the module docstring).
    `instance_id` is what the token's uses count: the same instance restarting presents
    its token again without taking another use."""
    parsed = parse_token(token)
    root_pem = await asyncio.to_thread(fetch_pinned_root, host, port, parsed.ca_pin)
    key = generate_key()
    identity = "" if trust_domain is None else SpiffeId(trust_domain, namespace, service).uri
    csr = build_csr(key, identity) if identity else _csr_without_san(key)
    request = mesh_pb2.CertifyRequest(
        csr=csr,
        token=token,
        service=service,
        namespace=namespace,
        ttl_seconds=ttl_seconds,
        instance_id=instance_id,
    )
    async with plane_channel(host, port, _client_context(root_pem), keepalive=0) as channel:
        reply = await _certify(channel, request, timeout, "certification with the join token")
    return _credentials(key_to_pem(key), reply)


async def bootstrap_in_turn(
    addresses: Sequence[Address],
    certify: Callable[[str, int], Awaitable[WorkloadCredentials]],
    rng: random.Random,
    max_backoff: float,
) -> WorkloadCredentials:
    """`certify(host, port)` at each bootstrap address in turn until one answers; after a
    round where every one was unreachable, a jittered back-off. Any error other than an
    unreachable control plane (a refused token, a pin that matches no root) is raised."""
    attempt = 0
    while True:
        error = "no bootstrap address"
        for host, port in addresses:
            try:
                return await certify(host, port)
            except UpstreamConnectError as exc:
                error = exc.message
                event(log, logging.WARNING, "control plane unreachable for bootstrap",
                      target=format_address((host, port)), error=error)  # fmt: skip
        attempt += 1
        delay = reconnect_delay(attempt, rng, cap=max_backoff)
        event(log, logging.WARNING, "control plane unreachable; retrying", error=error,
              retry_in=round(delay, 2))  # fmt: skip
        await asyncio.sleep(delay)


def _csr_without_san(key: Any) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "gossamer")]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


async def renew(
    channel: Channel, *, ttl_seconds: int = 0, timeout: float = 10.0
) -> WorkloadCredentials:
    """A fresh key and certificate, asked for over an existing mutual-TLS channel."""
    key = generate_key()
    request = mesh_pb2.CertifyRequest(csr=_csr_without_san(key), ttl_seconds=ttl_seconds)
    reply = await _certify(channel, request, timeout, "certificate renewal")
    return _credentials(key_to_pem(key), reply)
