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
- Revocation (docs/architecture.md, "Identity"): the ROOTCA secret may carry CRLs, one
  per issuing intermediate (`Credentials.crl_pem`). Python's `ssl` loads CRLs only from
  a file (`load_verify_locations(cafile=...)`; `cadata` takes certificates only), so they
  are written to the same private tmpfs directory as the key, loaded and deleted; then
  `VERIFY_CRL_CHECK_LEAF` makes OpenSSL refuse a peer whose leaf is listed, in both
  directions. That flag requires a CRL for the issuer of every peer leaf, so it is set
  only when CRLs came (the control plane always sends one per issuer, empty when nothing
  is revoked). New contexts serve new handshakes; for connections already open,
  `CredentialHolder.track` remembers each mTLS connection's peer serial (inbound and
  outbound, pooled ones included) and `update` aborts those whose serial the new CRLs
  list, so a revocation also ends keep-alive connections within the same push.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import ssl
import tempfile
import weakref
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509

from gossamer.certs.crl import load_crls, revoked_serials
from gossamer.certs.spiffe import spiffe_id_from_peercert, spiffe_ids_of
from gossamer.errors import ConfigError
from gossamer.logs import event

log = logging.getLogger("gossamer.proxy.tls")

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
    """The sidecar's certificate chain (leaf first), private key and trust bundle (PEM),
    and the CRLs that came with the bundle (PEM, one per issuer; empty: none)."""

    chain_pem: bytes
    key_pem: bytes
    bundle_pem: bytes
    crl_pem: bytes = b""


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
    revoked: frozenset[int] = frozenset()  # leaf serials the CRLs list
    crls: int = 0  # CRLs loaded (0: no revocation check)


def _tmpfs_dir() -> str:
    shm = Path("/dev/shm")
    base = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    return tempfile.mkdtemp(prefix="gossamer-tls-", dir=base)  # mode 0700


def _load_chain(
    ctx: ssl.SSLContext, chain_pem: bytes, key_pem: bytes, crl_pem: bytes = b""
) -> None:
    """The chain and key (and CRLs, when given, with the leaf check on) into `ctx`."""
    directory = _tmpfs_dir()
    try:
        cert_path = os.path.join(directory, "chain.pem")
        key_path = os.path.join(directory, "key.pem")
        crl_path = os.path.join(directory, "crl.pem")
        files = [(cert_path, chain_pem), (key_path, key_pem)]
        if crl_pem:
            files.append((crl_path, crl_pem))
        for path, data in files:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        ctx.load_cert_chain(cert_path, key_path)
        if crl_pem:
            ctx.load_verify_locations(cafile=crl_path)
            ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
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
    crls = load_crls(credentials.crl_pem) if credentials.crl_pem else []
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
            _load_chain(ctx, credentials.chain_pem, credentials.key_pem, credentials.crl_pem)
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
        revoked=revoked_serials(crls),
        crls=len(crls),
    )


def peer_serial(layer: Any) -> int | None:
    """The serial of the leaf a TLS connection's peer presented (None if unknown)."""
    cert = layer.get_extra_info("peercert")
    text = cert.get("serialNumber") if isinstance(cert, dict) else None
    try:
        return int(text, 16) if text else None
    except ValueError:
        return None


class CredentialHolder:
    """The contexts new connections use; `update` swaps them (certificate rotation, a new
    trust bundle or CRL) and aborts open connections whose peer the new CRLs revoke."""

    def __init__(self, credentials: Credentials | None = None) -> None:
        self.contexts: TlsContexts | None = None
        # open mTLS connections (TlsLayer) -> their peer's leaf serial; gone when closed
        self._peers: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
        self.revoked_closed = 0
        if credentials is not None:
            self.update(credentials)

    def update(self, credentials: Credentials) -> TlsContexts:
        self.contexts = contexts = build_contexts(credentials)
        if contexts.revoked:
            self._close_revoked(contexts.revoked)
        return contexts

    def track(self, layer: Any) -> None:
        """Remember an established mTLS connection, to end it if its peer is revoked."""
        serial = peer_serial(layer)
        if serial is None:
            return
        contexts = self.contexts
        if contexts is not None and serial in contexts.revoked:
            layer.abort()  # verified against an older CRL: refused now
            return
        self._peers[layer] = serial

    def _close_revoked(self, revoked: frozenset[int]) -> None:
        doomed = [
            (layer, serial) for layer, serial in list(self._peers.items()) if serial in revoked
        ]
        for layer, _serial in doomed:
            self._peers.pop(layer, None)
            if not layer.is_closing():
                layer.abort()
        if doomed:
            self.revoked_closed += len(doomed)
            event(log, logging.WARNING, "closed connections of revoked peers", count=len(doomed),
                  serials=sorted({format(s, "x") for _l, s in doomed}))  # fmt: skip

    def open_peers(self) -> int:
        return len(self._peers)
