"""CRLs of the mesh CA: serial parsing, one CRL per issuer, verification by OpenSSL."""

from __future__ import annotations

import datetime as dt
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import given
from hypothesis import strategies as st

from gossamer.certs import crl
from gossamer.certs.builders import utcnow
from gossamer.certs.ca import CertificateAuthority
from gossamer.certs.keys import build_csr, generate_key
from gossamer.errors import ConfigError

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)


@given(st.integers(min_value=1, max_value=(1 << 160) - 1))
def test_serials_round_trip_in_every_written_form(serial):
    text = crl.format_serial(serial)
    assert crl.parse_serial(text) == serial
    assert crl.parse_serial(text.upper()) == serial
    assert crl.parse_serial("0x" + text) == serial
    padded = text.zfill(len(text) + len(text) % 2)
    colons = ":".join(padded[i : i + 2] for i in range(0, len(padded), 2))
    assert crl.parse_serial(colons) == serial


@pytest.mark.parametrize("bad", ["", "  ", "xyz", "12g4", "-5", "0", "0" * 3, "f" * 41, 12, None])
def test_bad_serials_are_refused_with_a_clear_message(bad):
    with pytest.raises(ConfigError) as caught:
        crl.parse_serial(bad)
    assert "serial" in caught.value.message


def test_validity_is_twice_the_longest_leaf_at_least_an_hour():
    assert crl.validity_for(24 * 3600) == dt.timedelta(hours=48)
    assert crl.validity_for(60) == dt.timedelta(hours=1)


def _ca(tmp_path):
    return CertificateAuthority.init(tmp_path / "ca", "gossamer.local")


def test_one_crl_per_issuer_signed_by_it(tmp_path):
    ca = _ca(tmp_path)
    ca.rotate_root(propagation=0)
    revoked = [crl.RevokedSerial(0xABC, NOW, "key_compromise"), crl.RevokedSerial(7, NOW)]
    crls = [
        crl.build_crl(issuer, key, revoked, validity=dt.timedelta(hours=2), now=NOW)
        for issuer, key in ca.issuers()
    ]
    assert len(crls) == 2
    for made, (issuer, _key) in zip(crls, ca.issuers(), strict=True):
        assert made.issuer == issuer.subject
        assert made.is_signature_valid(issuer.public_key())
        assert made.next_update_utc == NOW + dt.timedelta(hours=2)
        assert made.last_update_utc < NOW
        assert sorted(e.serial_number for e in made) == [7, 0xABC]
        reason = made.get_revoked_certificate_by_serial_number(0xABC)
        assert reason is not None
        assert reason.extensions.get_extension_for_class(x509.CRLReason).value.reason == (
            x509.ReasonFlags.key_compromise
        )
    pem = crl.crls_pem(crls)
    assert crl.revoked_serials(crl.load_crls(pem)) == {7, 0xABC}


def test_an_empty_crl_when_nothing_is_revoked(tmp_path):
    issuer, key = _ca(tmp_path).issuers()[0]
    made = crl.build_crl(issuer, key, [], validity=dt.timedelta(hours=1), now=NOW)
    assert list(made) == []
    assert crl.load_crls(crl.crls_pem([made]))[0].issuer == issuer.subject


@pytest.mark.parametrize(
    "data",
    [
        b"garbage",
        b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n",
        b"-----BEGIN X509 CRL-----\nMIIB\n",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    ],
)
def test_malformed_crls_are_config_errors(data):
    with pytest.raises(ConfigError):
        crl.load_crls(data)


def test_openssl_refuses_a_revoked_leaf_and_accepts_others(tmp_path):
    """The CRL as the sidecar loads it: cafile with the CRLs, VERIFY_CRL_CHECK_LEAF."""
    ca = _ca(tmp_path)
    leaves = []
    for name in ("a", "b"):
        key = generate_key()
        uri = f"spiffe://gossamer.local/ns/default/sa/{name}"
        issued = ca.issue(build_csr(key, uri), uri, 600)
        leaves.append((issued, key))
    revoked = [crl.RevokedSerial(leaves[0][0].serial, utcnow())]
    issuer, ikey = ca.issuers()[0]
    crl_file = tmp_path / "crl.pem"
    crl_file.write_bytes(
        crl.crls_pem([crl.build_crl(issuer, ikey, revoked, validity=dt.timedelta(hours=1))])
    )
    results = {}
    for (issued, key), label in zip(leaves, ("revoked", "fine"), strict=True):
        results[label] = _handshake(tmp_path, ca, issued, key, crl_file)
    assert results == {"revoked": "refused", "fine": "ok"}


def _handshake(tmp_path, ca, issued, key, crl_file):
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.verify_mode = ssl.CERT_REQUIRED
    server.load_verify_locations(cadata=ca.trust_bundle_pem().decode())
    server.load_verify_locations(cafile=str(crl_file))
    server.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    chain = tmp_path / "server.pem"
    own_key = tmp_path / "server.key"
    chain.write_bytes(issued.chain_pem)
    own_key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server.load_cert_chain(chain, own_key)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.load_verify_locations(cadata=ca.trust_bundle_pem().decode())
    client.load_cert_chain(chain, own_key)
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    cobj = client.wrap_bio(c_in, c_out)
    sobj = server.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        for obj, src, dst in ((cobj, c_out, s_in), (sobj, s_out, c_in)):
            try:
                obj.do_handshake()
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError:
                return "refused"
            data = src.read()
            if data:
                dst.write(data)
    try:
        sobj.do_handshake()
        cobj.do_handshake()
    except ssl.SSLError:
        return "refused"
    return "ok"


def test_the_same_inputs_give_the_same_bytes_whenever_signed(tmp_path):
    """Replicas (and restarts) sign identical CRLs: no new ROOTCA version for nothing."""
    issuer, key = _ca(tmp_path).issuers()[0]
    revoked = [crl.RevokedSerial(5, NOW - dt.timedelta(minutes=5))]
    validity = dt.timedelta(hours=48)
    first = crl.build_crl(issuer, key, revoked, validity=validity, now=NOW)
    later = crl.build_crl(issuer, key, revoked, validity=validity, now=NOW + dt.timedelta(hours=3))
    assert crl.crls_pem([first]) == crl.crls_pem([later])
    # a new period (half the validity later): signed again, still half a validity ahead
    renewed = crl.build_crl(
        issuer, key, revoked, validity=validity, now=NOW + dt.timedelta(hours=24)
    )
    assert renewed.next_update_utc is not None
    assert renewed.next_update_utc - (NOW + dt.timedelta(hours=24)) >= validity / 2
    assert renewed.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number > (
        first.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    )
