"""TLS settings of the sidecar: contexts from PEM, peer identity, SNI naming.

- Contexts are built from PEM bytes. Python's `ssl` loads keys only from files, so the
  key and chain are written to a private (0700) directory on tmpfs (/dev/shm when it
  exists), loaded, and deleted at once.
- TLS 1.3 only, both directions. Servers (inbound) require a client certificate that
  chains to the trust bundle; clients (upstream) verify the chain against the bundle
  with `check_hostname` off, then the caller compares the peer's SPIFFE ID (URI SAN)
  with the cluster's identity, which Python's ssl cannot match itself.
- SNI names the target service port, Istio-style:
  `outbound_.<port>_._.<service>.<namespace>.svc.<trust-domain>` (the control plane's
  `contract.xds.sni`). The inbound side reads only the port (`inbound|<port>`); the rest is
  for people reading packet captures and for the control plane's filter chain match.
- ALPN: the server context offers `h2` and `http/1.1` (a peer that offers nothing gets
  HTTP/1.1); HTTP/1.1 pools use a client context without ALPN, HTTP/2 pools
  (`client_h2`) offer only `h2` and refuse a peer that does not select it.
- `CredentialHolder` keeps the current contexts; rotation swaps them for new connections
  while open connections keep the context they were made with.
"""

from __future__ import annotations

import os
import re
import shutil
import ssl
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509

from gossamer.certs.spiffe import spiffe_id_from_peercert, spiffe_ids_of
from gossamer.errors import ConfigError

__all__ = [
    "CredentialHolder",
    "Credentials",
    "TlsContexts",
    "build_contexts",
    "port_from_sni",
    "sni_for",
    "spiffe_id_from_peercert",
]

_SNI = re.compile(r"^outbound_\.(\d{1,5})_\.")


def sni_for(service: str, namespace: str, port: int, trust_domain: str = "gossamer.local") -> str:
    return f"outbound_.{port}_._.{service}.{namespace}.svc.{trust_domain}"


def port_from_sni(name: str | None) -> int | None:
    """The service port named by an SNI of `sni_for`'s form, else None."""
    if not name:
        return None
    m = _SNI.match(name)
    return int(m.group(1)) if m else None


@dataclass(frozen=True)
class Credentials:
    """The sidecar's certificate chain (leaf first), private key and trust bundle (PEM)."""

    chain_pem: bytes
    key_pem: bytes
    bundle_pem: bytes


@dataclass(frozen=True)
class TlsContexts:
    server: ssl.SSLContext
    client: ssl.SSLContext
    spiffe_id: str
    client_h2: ssl.SSLContext
    not_after: datetime
    serial: int
    issuer: str = ""  # the leaf's issuer (the intermediate that signed it), RFC 4514
    trusted_roots: int = 0  # certificates in the trust bundle


def _tmpfs_dir() -> str:
    shm = Path("/dev/shm")
    base = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    return tempfile.mkdtemp(prefix="gossamer-tls-", dir=base)  # mode 0700


def _load_chain(ctx: ssl.SSLContext, chain_pem: bytes, key_pem: bytes) -> None:
    directory = _tmpfs_dir()
    try:
        cert_path = os.path.join(directory, "chain.pem")
        key_path = os.path.join(directory, "key.pem")
        for path, data in ((cert_path, chain_pem), (key_path, key_pem)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        ctx.load_cert_chain(cert_path, key_path)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _record_sni(obj: Any, name: str | None, ctx: ssl.SSLContext) -> None:
    # called during the handshake of a server-side SSLObject; TlsLayer reads it back
    obj.gossamer_sni = name


def build_contexts(credentials: Credentials) -> TlsContexts:
    """Server and client contexts for mutual TLS 1.3 with these credentials."""
    try:
        leaf = x509.load_pem_x509_certificate(credentials.chain_pem)
    except ValueError as exc:
        raise ConfigError(f"the certificate is not valid PEM: {exc}") from None
    ids = spiffe_ids_of(leaf)
    if len(ids) != 1:
        raise ConfigError("the certificate must carry exactly one spiffe:// URI SAN")
    spiffe = ids[0]
    contexts: list[ssl.SSLContext] = []
    for purpose in (ssl.PROTOCOL_TLS_SERVER, ssl.PROTOCOL_TLS_CLIENT, ssl.PROTOCOL_TLS_CLIENT):
        ctx = ssl.SSLContext(purpose)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.verify_mode = ssl.CERT_REQUIRED
        if purpose == ssl.PROTOCOL_TLS_CLIENT:
            ctx.check_hostname = False
        else:
            ctx.num_tickets = 0  # no resumption: every connection proves its identity
            ctx.sni_callback = _record_sni
            ctx.set_alpn_protocols(["h2", "http/1.1"])
        if len(contexts) == 2:
            ctx.set_alpn_protocols(["h2"])
        try:
            ctx.load_verify_locations(cadata=credentials.bundle_pem.decode("ascii"))
            _load_chain(ctx, credentials.chain_pem, credentials.key_pem)
        except (ssl.SSLError, ValueError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot load TLS credentials: {exc}") from None
        contexts.append(ctx)
    return TlsContexts(
        server=contexts[0],
        client=contexts[1],
        spiffe_id=spiffe,
        client_h2=contexts[2],
        not_after=leaf.not_valid_after_utc,
        serial=leaf.serial_number,
        issuer=leaf.issuer.rfc4514_string(),
        trusted_roots=credentials.bundle_pem.count(b"-----BEGIN CERTIFICATE-----"),
    )


class CredentialHolder:
    """The contexts new connections use; `update` swaps them (certificate rotation)."""

    def __init__(self, credentials: Credentials | None = None) -> None:
        self.contexts: TlsContexts | None = None
        if credentials is not None:
            self.update(credentials)

    def update(self, credentials: Credentials) -> TlsContexts:
        self.contexts = build_contexts(credentials)
        return self.contexts
