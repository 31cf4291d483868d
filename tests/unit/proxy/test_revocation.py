"""Revocation in the sidecar: the ROOTCA secret's CRLs decoded (or NACKed), loaded into
the TLS contexts (a revoked peer leaf refused in both directions), and open connections
of a newly revoked peer aborted; over real loopback sockets."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest
from google.protobuf import any_pb2

from gossamer.certs import crl
from gossamer.certs.ca import CertificateAuthority
from gossamer.control.translate.peer_tls import root_ca_secret
from gossamer.errors import ConfigError, UpstreamConnectError
from gossamer.proxy.transport.pool import open_mtls
from gossamer.proxy.transport.tls_contexts import CredentialHolder, Credentials, sni_for
from gossamer.proxy.transport.tls_transport import TlsLayer
from gossamer.proxy.xds.translate import TrustBundle, decode_trust
from tests.helpers.pki import make_ca, make_workload

CATALOG = "spiffe://gossamer.local/ns/default/sa/catalog"


def crls_for(ca: CertificateAuthority, *serials: int) -> bytes:
    now = dt.datetime.now(dt.UTC)
    revoked = [crl.RevokedSerial(s, now) for s in serials]
    return crl.crls_pem(
        [
            crl.build_crl(issuer, key, revoked, validity=dt.timedelta(hours=1))
            for issuer, key in ca.issuers()
        ]
    )


def packed(secret) -> any_pb2.Any:
    out = any_pb2.Any()
    out.Pack(secret)
    return out


def creds(ca, service: str, tmp: Path, crl_pem: bytes = b"") -> tuple[Credentials, int]:
    w = make_workload(ca, service, tmp / service)
    from cryptography import x509

    serial = x509.load_pem_x509_certificate(w.chain_pem).serial_number
    return Credentials(w.chain_pem, w.key_pem, w.bundle_pem, crl_pem), serial


def test_the_rootca_secret_carries_the_crls(tmp_path):
    ca = make_ca(tmp_path / "ca")
    pem = crls_for(ca, 0x42)
    secret = root_ca_secret(ca.trust_bundle_pem(), pem)
    assert secret.validation_context.only_verify_leaf_cert_crl
    assert decode_trust([packed(secret)]) == TrustBundle(ca.trust_bundle_pem(), pem)
    plain = root_ca_secret(ca.trust_bundle_pem())
    assert decode_trust([packed(plain)]) == TrustBundle(ca.trust_bundle_pem(), b"")


@pytest.mark.parametrize(
    "bad",
    [b"not a crl", b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n", b"\xff\x00"],
)
def test_a_malformed_crl_is_a_clean_nack(tmp_path, bad):
    ca = make_ca(tmp_path / "ca")
    secret = root_ca_secret(ca.trust_bundle_pem(), bad)
    with pytest.raises(ConfigError, match="ROOTCA"):
        decode_trust([packed(secret)])


def test_a_crl_from_a_file_is_refused(tmp_path):
    ca = make_ca(tmp_path / "ca")
    secret = root_ca_secret(ca.trust_bundle_pem(), b"x")
    secret.validation_context.crl.filename = "/etc/crl.pem"
    with pytest.raises(ConfigError, match="must be inline"):
        decode_trust([packed(secret)])


class Sink(asyncio.Protocol):
    def __init__(self) -> None:
        self.lost = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)


async def serve(holder: CredentialHolder, accepted: list[Sink]):
    def on_handshake(layer: TlsLayer) -> Sink:
        holder.track(layer)
        sink = Sink()
        accepted.append(sink)
        return sink

    def factory() -> TlsLayer:
        assert holder.contexts is not None
        return TlsLayer(
            holder.contexts.server, server_side=True, on_handshake=on_handshake,
            handshake_timeout=2,
        )  # fmt: skip

    srv = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)
    return srv, srv.sockets[0].getsockname()[1]


async def connect(holder: CredentialHolder, port: int) -> tuple[TlsLayer, Sink]:
    assert holder.contexts is not None
    sink = Sink()
    layer = await open_mtls(
        "127.0.0.1", port, sink, context=holder.contexts.client,
        sni=sni_for("catalog", "default", 8080), identity=CATALOG, connect_timeout=5,
    )  # fmt: skip
    holder.track(layer)
    return layer, sink


async def test_revoked_peers_are_refused_both_ways_and_their_connections_closed(tmp_path):
    ca = make_ca(tmp_path / "ca")
    empty = crls_for(ca)
    server_creds, server_serial = creds(ca, "catalog", tmp_path, empty)
    web_creds, web_serial = creds(ca, "web", tmp_path, empty)
    other_creds, _ = creds(ca, "other", tmp_path, empty)
    server = CredentialHolder(server_creds)
    web, other = CredentialHolder(web_creds), CredentialHolder(other_creds)
    assert server.contexts is not None and server.contexts.crls == 1
    accepted: list[Sink] = []
    srv, port = await serve(server, accepted)
    try:
        _kept_layer, kept_sink = await connect(web, port)
        _other_layer, other_sink = await connect(other, port)
        # web's leaf is revoked: the server's next CRL closes web's open connection ...
        revoked = crls_for(ca, web_serial)
        server.update(Credentials(server_creds.chain_pem, server_creds.key_pem,
                                  server_creds.bundle_pem, revoked))  # fmt: skip
        await asyncio.wait_for(kept_sink.lost, 5)
        assert server.revoked_closed == 1 and not other_sink.lost.done()
        # ... and refuses its new handshakes, while the unrevoked caller still gets in
        with pytest.raises(UpstreamConnectError):
            _layer, sink = await connect(web, port)
            await asyncio.wait_for(sink.lost, 5)  # TLS 1.3: refused after the client's Finished
            raise UpstreamConnectError("the server closed the connection")
        _layer, pooled = await connect(other, port)
        # the other direction: a client holding the CRL closes its (pooled) connections
        # to a revoked server and refuses new ones
        other.update(Credentials(other_creds.chain_pem, other_creds.key_pem,
                                 other_creds.bundle_pem, crls_for(ca, server_serial)))  # fmt: skip
        await asyncio.wait_for(pooled.lost, 5)
        assert other.revoked_closed == 2 and other_sink.lost.done()  # both of its connections
        web.update(Credentials(web_creds.chain_pem, web_creds.key_pem, web_creds.bundle_pem,
                               crls_for(ca, server_serial)))  # fmt: skip
        with pytest.raises(UpstreamConnectError, match="revoked"):
            await connect(web, port)
    finally:
        srv.close()
