"""Address SANs an operator may put in a join token, and the CA putting them in leaves
(issue 17, finding 10)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from cryptography import x509

from gossamer.certs import errors
from gossamer.certs.ca import CertificateAuthority
from gossamer.certs.keys import build_csr, generate_key
from gossamer.certs.sans import MAX_ADDRESSES, check_addresses, normalize_ip, split_addresses
from gossamer.certs.token_rules import TokenRecord
from gossamer.certs.tokens import TokenStore
from gossamer.errors import ConfigError
from tests.unit.certs.test_csr import csr_with

TD = "gossamer.local"
ID = f"spiffe://{TD}/ns/default/sa/web"


def test_normalize_ip_maps_ipv4_in_ipv6_and_drops_zones():
    assert normalize_ip("10.0.0.5") == "10.0.0.5"
    assert normalize_ip("::ffff:10.0.0.5") == "10.0.0.5"
    assert normalize_ip("2001:DB8::0:1") == "2001:db8::1"
    assert normalize_ip("fe80::1%eth0") == "fe80::1"
    assert normalize_ip("web.example") is None
    assert normalize_ip("") is None


def test_check_addresses_keeps_ips_and_host_names_canonical_and_unique():
    got = check_addresses(["192.0.2.10", "::ffff:192.0.2.10", "Web.Example.", "2001:db8::1"])
    assert got == ("192.0.2.10", "web.example", "2001:db8::1")
    assert split_addresses(got) == (["192.0.2.10", "2001:db8::1"], ["web.example"])


@pytest.mark.parametrize(
    ("address", "says"),
    [
        ("0.0.0.0", "unspecified, multicast or loopback"),
        ("::", "unspecified, multicast or loopback"),
        ("224.0.0.1", "unspecified, multicast or loopback"),
        ("127.0.0.1", "unspecified, multicast or loopback"),
        ("::1", "unspecified, multicast or loopback"),
        ("gossamer-control", "control plane's own certificate"),
        ("LOCALHOST", "control plane's own certificate"),
        ("not a host", "neither an IP address nor a host name"),
        ("under_score", "neither an IP address nor a host name"),
        ("", "must be an IP address or host name"),
        (7, "must be an IP address or host name"),
    ],
)
def test_check_addresses_refuses_what_no_token_may_allow(address, says):
    with pytest.raises(ConfigError, match=says) as info:
        check_addresses([address])
    assert info.value.field == "addresses"


def test_check_addresses_refuses_too_many_and_non_lists():
    with pytest.raises(ConfigError, match=f"at most {MAX_ADDRESSES}"):
        check_addresses([f"192.0.2.{n}" for n in range(MAX_ADDRESSES + 1)])
    with pytest.raises(ConfigError, match="must be a list"):
        check_addresses("192.0.2.1")


def test_tokens_store_their_addresses_and_show_them(tmp_path: Path):
    store = TokenStore(tmp_path)
    _token, record = store.create("web", "sha256:" + "0" * 64, addresses=["192.0.2.10"])
    assert record.addresses == ("192.0.2.10",)
    [again] = TokenStore(tmp_path).list()
    assert again.addresses == ("192.0.2.10",) and again.public()["addresses"] == ["192.0.2.10"]
    with pytest.raises(ConfigError, match="loopback"):
        store.create("web", "sha256:" + "0" * 64, addresses=["127.0.0.1"])
    # a record written before addresses existed reads as allowing none
    raw = {k: v for k, v in record.__dict__.items() if k != "addresses"}
    assert TokenRecord.from_json(raw).addresses == ()


def _sans(pem: bytes) -> x509.SubjectAlternativeName:
    cert = x509.load_pem_x509_certificate(pem)
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


def test_the_leaf_carries_the_allowed_addresses_whatever_the_csr_asks(tmp_path: Path):
    ca = CertificateAuthority.init(tmp_path / "ca", TD)
    issued = ca.issue(build_csr(generate_key(), ID), ID, addresses=["192.0.2.10", "web.example"])
    san = _sans(issued.cert_pem)
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("192.0.2.10")]
    assert san.get_values_for_type(x509.DNSName) == ["web.example"]
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [ID]
    # none allowed: none carried
    plain = _sans(ca.issue(build_csr(generate_key(), ID), ID).cert_pem)
    assert plain.get_values_for_type(x509.IPAddress) == []


def test_a_csr_asking_for_an_address_not_allowed_is_refused(tmp_path: Path):
    ca = CertificateAuthority.init(tmp_path / "ca", TD)
    key = generate_key()
    asks = [x509.UniformResourceIdentifier(ID), x509.IPAddress(ipaddress.ip_address("192.0.2.99"))]
    with pytest.raises(errors.IdentityMismatch, match=r"IP address 192\.0\.2\.99, not allowed"):
        ca.issue(csr_with(key, asks), ID, addresses=["192.0.2.10"])
    with pytest.raises(errors.IdentityMismatch, match=r"IP address 192\.0\.2\.99"):
        ca.issue(csr_with(key, asks), ID)
    # asking for an allowed one is fine (and the leaf carries it once)
    allowed = [x509.IPAddress(ipaddress.ip_address("192.0.2.10"))]
    issued = ca.issue(csr_with(key, allowed), ID, addresses=["192.0.2.10"])
    assert len(_sans(issued.cert_pem).get_values_for_type(x509.IPAddress)) == 1
