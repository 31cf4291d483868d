"""The CA: leaf shape, chains, key file modes, rotation, bring-your-own root."""

from __future__ import annotations

import datetime as dt
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from gossamer.certs import builders
from gossamer.certs.ca import CertificateAuthority
from gossamer.certs.errors import CaError, CaExists, CaNotFound, IdentityMismatch
from gossamer.certs.keys import build_csr, generate_key
from gossamer.certs.spiffe import spiffe_ids_of

ID = "spiffe://gossamer.local/ns/default/sa/web"


@pytest.fixture
def ca(tmp_path):
    return CertificateAuthority.init(tmp_path / "ca", "gossamer.local")


def issue(ca, identity=ID, **kw):
    return ca.issue(build_csr(generate_key(), identity), identity, **kw)


def test_private_keys_are_0600_and_dir_0700(ca):
    assert stat.S_IMODE(ca.directory.stat().st_mode) == 0o700
    keys = list(ca.directory.glob("*.key"))
    assert len(keys) == 2
    for key in keys:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_root_and_intermediate_shape(ca):
    gen = ca.generations[0]
    for cert in (gen.root, gen.intermediate):
        assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
        assert cert.public_key().curve.name == "secp256r1"
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    root_life = gen.root.not_valid_after_utc - gen.root.not_valid_before_utc
    inter_life = gen.intermediate.not_valid_after_utc - gen.intermediate.not_valid_before_utc
    assert root_life.days >= 3650
    assert 365 <= inter_life.days <= 366
    assert (
        gen.intermediate.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length
        == 0
    )


def test_leaf_shape(ca):
    issued = issue(ca)
    leaf = x509.load_pem_x509_certificate(issued.cert_pem)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(san) == [x509.UniformResourceIdentifier(ID)]
    assert spiffe_ids_of(leaf) == [ID]
    assert leaf.serial_number.bit_length() == 159
    ku = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and not ku.key_cert_sign and not ku.key_encipherment
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    life = issued.not_after - issued.not_before
    assert dt.timedelta(hours=24) <= life <= dt.timedelta(hours=24, minutes=2)
    chain = x509.load_pem_x509_certificates(issued.chain_pem)
    assert len(chain) == 2 and chain[0] == leaf
    leaf.verify_directly_issued_by(chain[1])
    chain[1].verify_directly_issued_by(ca.generations[0].root)


def test_serials_are_random(ca):
    serials = {issue(ca).serial for _ in range(20)}
    assert len(serials) == 20


def test_ttl_is_honoured_and_capped_by_intermediate(ca):
    short = issue(ca, ttl=600)
    assert (
        dt.timedelta(minutes=10) <= short.not_after - short.not_before <= dt.timedelta(minutes=12)
    )
    huge = issue(ca, ttl=10 * 365 * 86400)
    assert huge.not_after <= ca.generations[0].intermediate.not_valid_after_utc


def test_wrong_trust_domain_and_mismatch(ca):
    with pytest.raises(CaError, match="outside this CA's trust domain"):
        issue(ca, "spiffe://other.td/ns/default/sa/web")
    with pytest.raises(IdentityMismatch):
        ca.issue(build_csr(generate_key(), ID), "spiffe://gossamer.local/ns/default/sa/db")


def test_refuses_overwrite_without_force(ca):
    with pytest.raises(CaExists):
        CertificateAuthority.init(ca.directory, "gossamer.local")
    again = CertificateAuthority.init(ca.directory, "gossamer.local", force=True)
    assert again.root_pin() != ca.root_pin()


def test_load_missing(tmp_path):
    with pytest.raises(CaNotFound):
        CertificateAuthority.load(tmp_path / "nothing")


def test_load_round_trip(ca):
    loaded = CertificateAuthority.load(ca.directory)
    assert loaded.root_pin() == ca.root_pin()
    assert loaded.trust_bundle_pem() == ca.trust_bundle_pem()


def test_rotation_keeps_old_root_until_retired(ca):
    old = issue(ca)
    old_pin = ca.root_pin()
    assert ca.rotate_root(propagation=0) == 2
    assert ca.root_pin() == old_pin  # tokens pin the anchor until it is retired
    new = issue(ca)
    bundle = x509.load_pem_x509_certificates(ca.trust_bundle_pem())
    assert len(bundle) == 2
    # the new leaf chains to the new root, the old one to the old root
    new_inter = x509.load_pem_x509_certificates(new.chain_pem)[1]
    old_inter = x509.load_pem_x509_certificates(old.chain_pem)[1]
    new_inter.verify_directly_issued_by(bundle[1])
    old_inter.verify_directly_issued_by(bundle[0])
    # another process sees the same state
    assert CertificateAuthority.load(ca.directory).trust_bundle_pem() == ca.trust_bundle_pem()
    with pytest.raises(CaError, match="active root"):
        ca.retire_root(2)
    assert ca.retire_root() == [1]
    assert ca.root_pin() != old_pin
    assert len(x509.load_pem_x509_certificates(ca.trust_bundle_pem())) == 1
    assert not (ca.directory / "root-1.key").exists()
    with pytest.raises(CaError, match="no old root"):
        ca.retire_root()


def test_bring_your_own_root(tmp_path):
    root, key = builders.make_root("corp.example", 1)
    cert_pem = root.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    ca = CertificateAuthority.init(
        tmp_path / "ca", "gossamer.local", root_cert_pem=cert_pem, root_key_pem=key_pem
    )
    assert ca.generations[0].root == root
    assert ca.root_pin() == builders.spki_pin(root)
    issued = issue(ca)
    x509.load_pem_x509_certificates(issued.chain_pem)[1].verify_directly_issued_by(root)


def test_bring_your_own_root_mismatched_key(tmp_path):
    root, _ = builders.make_root("corp.example", 1)
    _, other_key = builders.make_root("corp.example", 2)
    with pytest.raises(CaError, match="does not match"):
        CertificateAuthority.init(
            tmp_path / "ca",
            "gossamer.local",
            root_cert_pem=root.public_bytes(serialization.Encoding.PEM),
            root_key_pem=other_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )


def test_server_certificate_allows_dns(ca):
    key_pem, issued = ca.issue_server_certificate(
        "spiffe://gossamer.local/ns/gossamer-system/sa/control",
        dns_names=["gossamer-control", "localhost"],
        ip_addresses=["127.0.0.1"],
    )
    leaf = x509.load_pem_x509_certificate(issued.cert_pem)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["gossamer-control", "localhost"]
    assert b"PRIVATE KEY" in key_pem


def test_rotation_propagation_delay(ca):
    import datetime as dt

    ca.rotate_root(propagation=60)
    now = builders.utcnow()
    assert ca.issuing_generation(now) == 1
    assert ca.issuing_generation(now + dt.timedelta(seconds=61)) == 2
    leaf = issue(ca)
    inter = x509.load_pem_x509_certificates(leaf.chain_pem)[1]
    inter.verify_directly_issued_by(ca.generations[0].root)
    with pytest.raises(CaError, match="still propagating"):
        ca.retire_root()
