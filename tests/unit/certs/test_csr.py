"""Every rejected CSR case fails with its own error type."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from gossamer.certs import errors
from gossamer.certs.csr import validate_csr
from gossamer.certs.keys import build_csr, generate_key

ID = "spiffe://gossamer.local/ns/default/sa/web"


def csr_with(key, sans=None, ca=None) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "t")])
    )
    if sans is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if ca is not None:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=ca, path_length=None), critical=True
        )
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM)


def test_valid_csr_passes():
    csr = validate_csr(build_csr(generate_key(), ID), ID)
    assert csr.is_signature_valid


@pytest.mark.parametrize(
    "key",
    [
        ec.generate_private_key(ec.SECP384R1()),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
    ],
)
def test_other_allowed_keys(key):
    validate_csr(csr_with(key, [x509.UniformResourceIdentifier(ID)]), ID)


def test_der_and_no_san_accepted():
    pem = csr_with(generate_key())
    der = x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER)
    validate_csr(der, ID)


def test_bad_signature():
    der = bytearray(
        x509.load_pem_x509_csr(build_csr(generate_key(), ID)).public_bytes(
            serialization.Encoding.DER
        )
    )
    der[-3] ^= 0x55  # inside the signature BIT STRING
    with pytest.raises(errors.CsrSignatureInvalid):
        validate_csr(bytes(der), ID)


@pytest.mark.parametrize(
    "key",
    [
        ec.generate_private_key(ec.SECP521R1()),
        ec.generate_private_key(ec.SECP256K1()),
        rsa.generate_private_key(public_exponent=65537, key_size=1024),
        ed25519.Ed25519PrivateKey.generate(),
    ],
    ids=["p521", "secp256k1", "rsa1024", "ed25519"],
)
def test_unsupported_keys(key):
    with pytest.raises(errors.UnsupportedKey):
        validate_csr(csr_with(key, [x509.UniformResourceIdentifier(ID)]), ID)


def test_identity_mismatch():
    other = "spiffe://gossamer.local/ns/default/sa/db"
    with pytest.raises(errors.IdentityMismatch):
        validate_csr(build_csr(generate_key(), other), ID)


def test_other_trust_domain_is_a_mismatch():
    with pytest.raises(errors.IdentityMismatch):
        validate_csr(build_csr(generate_key(), "spiffe://evil.example/ns/default/sa/web"), ID)


def test_dns_san_needs_policy():
    pem = build_csr(generate_key(), ID, dns_names=("web.local",))
    with pytest.raises(errors.IdentityMismatch):
        validate_csr(pem, ID)
    validate_csr(pem, ID, allowed_dns=["web.local"])


def test_extra_uri_or_ip_rejected():
    import ipaddress

    for extra in (
        x509.UniformResourceIdentifier("https://example.com"),
        x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
        x509.RFC822Name("a@b.c"),
    ):
        with pytest.raises(errors.IdentityMismatch):
            validate_csr(csr_with(generate_key(), [x509.UniformResourceIdentifier(ID), extra]), ID)


def test_two_spiffe_ids():
    sans = [
        x509.UniformResourceIdentifier(ID),
        x509.UniformResourceIdentifier("spiffe://gossamer.local/ns/default/sa/db"),
    ]
    with pytest.raises(errors.MultipleSpiffeIds):
        validate_csr(csr_with(generate_key(), sans), ID)


def test_ca_true_requested():
    with pytest.raises(errors.CaRequested):
        validate_csr(csr_with(generate_key(), [x509.UniformResourceIdentifier(ID)], ca=True), ID)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello",
        b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
        bytes(range(256)),
    ],
)
def test_not_a_csr(data):
    with pytest.raises(errors.NotACsr):
        validate_csr(data, ID)


def test_certificate_is_not_a_csr(tmp_path):
    from tests.helpers.pki import make_ca

    ca = make_ca(tmp_path / "ca")
    with pytest.raises(errors.NotACsr):
        validate_csr(ca.trust_bundle_pem(), ID)


def test_each_case_has_its_own_type():
    kinds = [
        errors.NotACsr,
        errors.CsrSignatureInvalid,
        errors.UnsupportedKey,
        errors.IdentityMismatch,
        errors.MultipleSpiffeIds,
        errors.CaRequested,
    ]
    assert len(set(kinds)) == len(kinds)
    for a in kinds:
        for b in kinds:
            assert a is b or not issubclass(a, b)
