"""Who is on the other end of a gRPC call: the SPIFFE ID of a verified client certificate.

On the mTLS port gRPC has already verified the client's chain against the trust bundle
during the handshake; here we read the leaf from the call's auth context and take its
single SPIFFE ID. On a port without client certificates there is no identity.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

import grpc
from cryptography import x509

from gossamer.certs.errors import InvalidSpiffeId
from gossamer.certs.sans import normalize_ip
from gossamer.certs.spiffe import SpiffeId, spiffe_ids_of


def peer_certificate(context: Any) -> x509.Certificate | None:
    """The client's leaf certificate, verified by gRPC's handshake (mTLS ports only)."""
    try:
        pems = context.auth_context().get("x509_pem_cert") or []
    except Exception:  # a context without transport security
        return None
    if not pems:
        return None
    try:
        return x509.load_pem_x509_certificate(pems[0])
    except ValueError:
        return None


def peer_cert_not_after(context: Any) -> float | None:
    cert = peer_certificate(context)
    return None if cert is None else cert.not_valid_after_utc.timestamp()


def peer_identity(context: Any, trust_domain: str) -> SpiffeId | None:
    """The caller's SpiffeId in `trust_domain`, or None if it presented no usable cert."""
    cert = peer_certificate(context)
    if cert is None:
        return None
    ids = spiffe_ids_of(cert)
    if len(ids) != 1:
        return None
    try:
        sid = SpiffeId.parse(ids[0])
    except InvalidSpiffeId:
        return None
    return sid if sid.trust_domain == trust_domain else None


async def require_peer(context: Any, trust_domain: str, what: str) -> SpiffeId:
    """The caller's SpiffeId, or the call aborted UNAUTHENTICATED ("`what` needs a mesh
    client certificate") when it presented none usable in `trust_domain`."""
    peer = peer_identity(context, trust_domain)
    if peer is None:
        await context.abort(
            grpc.StatusCode.UNAUTHENTICATED, f"{what} needs a mesh client certificate"
        )
        raise AssertionError("context.abort returned")  # it raises; this line is for mypy
    return peer


def peer_address(context: Any) -> str | None:
    """The caller's IP address from gRPC's peer string, in canonical form, or None (a
    Unix socket, no peer).

    gRPC writes `ipv4:1.2.3.4:5` and `ipv6:[::1]:5`, percent-encoding the brackets
    (`ipv6:%5B::1%5D:5`) since gRPC 1.5x and a zone's `%` (`fe80::1%25eth0`); an IPv4
    client of a dual-stack listener may appear as `ipv6:[::ffff:1.2.3.4]:5` (grpcio 1.85
    already writes `ipv4:` for it). All of these give the plain address (IPv4 for a
    mapped one, no zone), as `certs.sans.normalize_ip` compares addresses.
    """
    peer = str(context.peer() or "")
    if peer.startswith("ipv4:"):
        host = peer[5:].rsplit(":", 1)[0]
    elif peer.startswith("ipv6:"):
        host = urllib.parse.unquote(peer[5:]).rsplit(":", 1)[0].strip("[]")
    else:
        return None
    return normalize_ip(host)
