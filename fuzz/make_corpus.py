"""Write the generated seed files of fuzz/corpus/ (binary ones: h2 frames, xDS
resources, CSRs): `python -m fuzz.make_corpus`. The text seeds (http1, meshyaml,
compose) are written by hand. Deterministic where the libraries allow (ECDSA
signatures are not), so a re-run only changes what changed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import h2.config
import h2.connection
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from envoy.service.discovery.v3 import discovery_pb2

CORPUS = Path(__file__).resolve().parent / "corpus"


def _h2_client() -> h2.connection.H2Connection:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    return conn


def _after_preface(conn: h2.connection.H2Connection) -> bytes:
    return conn.data_to_send()[len(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") :]


def _head(path: str, method: str = "GET", **extra: str) -> list[tuple[str, str]]:
    headers = [(":method", method), (":scheme", "http"), (":authority", "catalog:8080")]
    headers.append((":path", path))
    return headers + [(k.replace("_", "-"), v) for k, v in extra.items()]


def h2_seeds() -> dict[str, bytes]:
    def get() -> h2.connection.H2Connection:
        conn = _h2_client()
        conn.send_headers(1, _head("/items?q=1"), end_stream=True)
        return conn

    def post() -> h2.connection.H2Connection:
        conn = _h2_client()
        conn.send_headers(1, _head("/echo", "POST", content_length="11"))
        conn.send_data(1, b"hello world", end_stream=True)
        return conn

    def grpc() -> h2.connection.H2Connection:
        conn = _h2_client()
        head = _head("/pkg.Echo/Say", "POST", content_type="application/grpc", te="trailers")
        conn.send_headers(1, [*head, ("grpc-timeout", "5S")])
        conn.send_data(1, b"\x00\x00\x00\x00\x03abc")
        conn.send_headers(1, [("x-trailer", "1")], end_stream=True)
        return conn

    def streams() -> h2.connection.H2Connection:
        conn = _h2_client()
        conn.send_headers(1, _head("/a"), end_stream=True)
        conn.send_headers(3, _head("/fail"), end_stream=True)
        conn.send_headers(5, _head("/b", "PUT"))
        conn.reset_stream(5)
        conn.ping(b"12345678")
        conn.increment_flow_control_window(65536)
        conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1024})
        conn.send_headers(7, _head("/c", "DELETE"), end_stream=True)
        conn.close_connection()
        return conn

    seeds: dict[str, Callable[[], h2.connection.H2Connection]] = {
        "get": get,
        "post": post,
        "grpc": grpc,
        "streams": streams,
    }
    out = {name: b"\x00" + _after_preface(make()) for name, make in seeds.items()}
    out["post-streamed-sliced"] = b"\xc9" + out["post"][1:]
    return out


def xds_seeds() -> dict[str, bytes]:
    from gossamer.contract import xds
    from gossamer.control.translate.peer_tls import root_ca_secret
    from tests.helpers.xds_fixtures import make_ca_bundle, view

    out = {}
    for service in ("web", "catalog", "inventory"):
        response = discovery_pb2.DiscoveryResponse(version_info="1", nonce="n")
        for resources in view(service).values():
            response.resources.extend(resources)
        out[f"all-{service}"] = response.SerializeToString()
    for type_url, resources in view("web").items():
        short = type_url.rsplit(".", 1)[-1]
        response = discovery_pb2.DiscoveryResponse(type_url=type_url, resources=resources)
        out[f"web-{short}"] = response.SerializeToString()
    secret = discovery_pb2.DiscoveryResponse(type_url=xds.SECRET)
    secret.resources.add().Pack(root_ca_secret(make_ca_bundle()))
    out["secret"] = secret.SerializeToString()
    with_crl = discovery_pb2.DiscoveryResponse(type_url=xds.SECRET)
    bundle, crl_pem = make_ca_crl()
    with_crl.resources.add().Pack(root_ca_secret(bundle, crl_pem))
    out["secret-crl"] = with_crl.SerializeToString()
    return out


def make_ca_crl() -> tuple[bytes, bytes]:
    """A fresh CA's trust bundle and a CRL of its issuer listing one serial."""
    import datetime as dt
    import tempfile
    from pathlib import Path

    from gossamer.certs import crl
    from tests.helpers.pki import make_ca

    with tempfile.TemporaryDirectory() as tmp:
        ca = make_ca(Path(tmp))
        revoked = [crl.RevokedSerial(0x1234ABCD, dt.datetime.now(dt.UTC), "key_compromise")]
        crls = [
            crl.build_crl(issuer, key, revoked, validity=dt.timedelta(days=3650))
            for issuer, key in ca.issuers()
        ]
        return ca.trust_bundle_pem(), crl.crls_pem(crls)


def _csr(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, *, ca: bool = False) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "web")])
    )
    names: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier("spiffe://gossamer.local/ns/default/sa/web"),
        x509.DNSName("web.default.svc"),
    ]
    builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def csr_seeds() -> dict[str, bytes]:
    from fuzz.targets.csr import SIGNING_KEY

    fixed = SIGNING_KEY
    other = ec.generate_private_key(ec.SECP384R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = _csr(other)
    pem = x509.load_der_x509_csr(der).public_bytes(serialization.Encoding.PEM)
    return {
        "pem-p384": b"\x02" + pem,
        "der-p384": b"\x00" + der,
        "der-rsa2048": b"\x02" + _csr(rsa_key),
        "tbs-fixed-key": b"\x03" + x509.load_der_x509_csr(_csr(fixed)).tbs_certrequest_bytes,
        "tbs-ca-requested": b"\x01"
        + x509.load_der_x509_csr(_csr(fixed, ca=True)).tbs_certrequest_bytes,
    }


def tlshello_seeds() -> dict[str, bytes]:
    """ClientHellos as OpenSSL writes them (with and without SNI and ALPN), after the
    control byte (the size of the pieces they are fed in)."""
    import ssl

    def hello(server_name: str | None, alpn: list[str] | None) -> bytes:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        if alpn:
            ctx.set_alpn_protocols(alpn)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        try:
            ctx.wrap_bio(incoming, outgoing, server_hostname=server_name).do_handshake()
        except ssl.SSLWantReadError:
            pass
        return outgoing.read()

    sni = "outbound_.8080_._.catalog.default.svc.gossamer.local"
    return {
        "mesh-sni-h2": b"\x00" + hello(sni, ["h2", "http/1.1"]),
        "mesh-sni-pieces-7": b"\x07" + hello(sni, None),
        "no-sni": b"\x01" + hello(None, None),
        "plain-http": b"\x00GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    }


def dns_seeds() -> dict[str, bytes]:
    """Queries as a stub resolver sends them: mesh names (A, AAAA, TCP-less), a name
    to forward, one with an EDNS OPT record, and broken ones."""
    from gossamer.proxy.transport import dns_wire as wire

    edns = bytearray(wire.build_query("example.com", ident=3) + b"\x00\x00\x29\x04\xd0" + bytes(6))
    edns[11] = 1  # ARCOUNT
    return {
        "mesh-a": wire.build_query("catalog", ident=1),
        "mesh-aaaa-qualified": wire.build_query("Catalog.default.svc.gossamer.local.", 28, 2),
        "forward": wire.build_query("example.com", ident=4),
        "forward-edns": bytes(edns),
        "pointer": wire.HEADER.pack(5, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c\x00\x01\x00\x01",
        "short": b"\x00\x06\x01",
    }


def main() -> None:
    for name, seeds in (
        ("h2", h2_seeds()),
        ("xds", xds_seeds()),
        ("csr", csr_seeds()),
        ("tlshello", tlshello_seeds()),
        ("dns", dns_seeds()),
    ):
        folder = CORPUS / name
        folder.mkdir(parents=True, exist_ok=True)
        for seed, data in seeds.items():
            (folder / seed).write_bytes(data)
        print(f"{folder}: {len(seeds)} seeds")


if __name__ == "__main__":
    main()
