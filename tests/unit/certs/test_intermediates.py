"""Replica intermediates (certs/intermediates.py): the one-command form, the CSR flow,
what a replica directory holds, and the mistakes refused with a clear error."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from cryptography import x509

from gossamer.certs import crl
from gossamer.certs.ca import CertificateAuthority
from gossamer.certs.errors import CaError, CaExists
from gossamer.certs.intermediates import (
    CSR_FILE,
    PENDING_KEY,
    check_name,
    install,
    issue_local,
    request,
    sign,
)
from gossamer.certs.keys import build_csr, generate_key

TD = "gossamer.local"
WEB = f"spiffe://{TD}/ns/default/sa/web"


@pytest.fixture
def root(tmp_path):
    return CertificateAuthority.init(tmp_path / "root", TD)


def leaf_chain(ca: CertificateAuthority) -> list[x509.Certificate]:
    issued = ca.issue(build_csr(generate_key(), WEB), WEB, 600)
    return x509.load_pem_x509_certificates(issued.chain_pem)


def test_one_command_form_makes_a_replica_directory_without_root_key(root, tmp_path):
    replica = issue_local(root, tmp_path / "a", "node-a")
    assert replica.replica == "node-a" and not replica.holds_root_key
    assert root.holds_root_key
    assert not list((tmp_path / "a").glob("root-*.key"))
    assert not (tmp_path / "a" / PENDING_KEY).exists()
    assert (tmp_path / "a" / "intermediate-1.key").stat().st_mode & 0o777 == 0o600
    assert replica.trust_bundle_pem() == root.trust_bundle_pem()
    assert replica.root_pin() == root.root_pin()  # tokens of either verify at either
    leaf, inter = leaf_chain(replica)
    assert "node-a" in inter.subject.rfc4514_string()
    inter.verify_directly_issued_by(root.generations[0].root)
    leaf.verify_directly_issued_by(inter)


def test_csr_flow_keeps_the_key_where_it_was_made(root, tmp_path):
    out = tmp_path / "b"
    csr = request(out, "node-b")
    key_before = (out / PENDING_KEY).read_bytes()
    signed = json.loads(json.dumps(sign(root, csr)))  # what travels: JSON, no key
    assert "KEY" not in json.dumps(signed)
    replica = install(out, signed)
    assert (out / "intermediate-1.key").read_bytes() == key_before
    assert not (out / CSR_FILE).exists()
    assert replica.replica == "node-b"


def test_two_replicas_have_distinct_issuers_and_crls(root, tmp_path):
    a = issue_local(root, tmp_path / "a", "node-a")
    b = issue_local(root, tmp_path / "b", "node-b")
    [(ia, _)], [(ib, _)] = a.issuers(), b.issuers()
    assert ia.subject != ib.subject  # OpenSSL finds a leaf's CRL by its issuer's name
    assert crl.issuer_id(ia) != crl.issuer_id(ib)


def test_after_a_rotation_a_replica_adds_the_new_generation(root, tmp_path):
    issue_local(root, tmp_path / "a", "node-a")
    root.rotate_root(propagation=0)
    replica = issue_local(root, tmp_path / "a", "node-a")
    assert [g.number for g in replica.generations] == [1, 2]
    assert replica.active == 2 and replica.anchor == 1
    _, inter = leaf_chain(replica)
    inter.verify_directly_issued_by(root.generations[1].root)
    root.retire_root()
    replica = issue_local(root, tmp_path / "a", "node-a")  # a retired root's goes
    assert [g.number for g in replica.generations] == [2]
    assert not (tmp_path / "a" / "intermediate-1.key").exists()


def test_replica_refuses_root_operations(root, tmp_path):
    replica = issue_local(root, tmp_path / "a", "node-a")
    for action in (replica.rotate_root, replica.retire_root):
        with pytest.raises(CaError, match="holds no root key"):
            action()
    with pytest.raises(CaError, match="holds no root key"):
        sign(replica, request(tmp_path / "c", "node-c"))


def test_mistakes_are_refused_clearly(root, tmp_path):
    with pytest.raises(CaError, match="own directory"):
        issue_local(root, root.directory, "node-a")
    with pytest.raises(CaExists, match="holds a root CA"):
        request(root.directory, "node-a")
    with pytest.raises(CaError, match="not a DNS label"):
        check_name("Node_A")
    signed = sign(root, request(tmp_path / "b", "node-b"))
    with pytest.raises(CaError, match="no pending intermediate key"):
        install(tmp_path / "elsewhere", signed)
    request(tmp_path / "c", "node-c")  # another key: the signed cert is not for it
    with pytest.raises(CaError, match="not for the key"):
        install(tmp_path / "c", signed)
    other = CertificateAuthority.init(tmp_path / "other", TD)
    forged = {**signed, "roots": {"1": other.trust_bundle_pem().decode()}}
    with pytest.raises(CaError, match="not signed by root generation 1"):
        install(tmp_path / "b", forged)
    with pytest.raises(CaError, match="not a signed intermediate"):
        install(tmp_path / "b", {"format": "x"})
    with pytest.raises(CaError, match="not a PEM certificate signing request"):
        sign(root, b"junk")


def test_intermediate_lifetime_is_capped_by_ttl(root, tmp_path):
    replica = issue_local(root, tmp_path / "a", "node-a", ttl=3600)
    inter = replica.generations[0].intermediate
    life = inter.not_valid_after_utc - inter.not_valid_before_utc
    assert life <= dt.timedelta(hours=1, minutes=1)
