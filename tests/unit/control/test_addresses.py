"""Which address a sidecar may register (control/addresses.py), gRPC peer strings
(control/peer.py) and the refusal counter (control/metrics.py): issue 17, finding 10."""

from __future__ import annotations

from pathlib import Path

import pytest

from gossamer.certs.ca import CertificateAuthority
from gossamer.certs.keys import build_csr, generate_key
from gossamer.control.addresses import AddressRefused, LeafAddresses, check_address
from gossamer.control.peer import peer_address
from tests.helpers.control_metrics import control_metrics_text

TD = "gossamer.local"
ID = f"spiffe://{TD}/ns/default/sa/web"
NONE = LeafAddresses()


def test_no_address_asked_registers_the_peer_address():
    assert check_address("", "172.20.0.3", NONE) == "172.20.0.3"
    assert check_address("", "::ffff:172.20.0.3", NONE) == "172.20.0.3"


def test_the_peer_address_itself_in_any_spelling():
    assert check_address("172.20.0.3", "172.20.0.3", NONE) == "172.20.0.3"
    assert check_address("::ffff:172.20.0.3", "172.20.0.3", NONE) == "172.20.0.3"
    assert check_address("2001:DB8::1", "2001:db8::1", NONE) == "2001:db8::1"


def test_loopback_for_a_loopback_peer_only():
    assert check_address("127.0.0.1", "127.0.0.1", NONE) == "127.0.0.1"
    assert check_address("127.0.0.2", "127.0.0.1", NONE) == "127.0.0.2"
    assert check_address("::1", "127.0.0.1", NONE) == "::1"
    with pytest.raises(AddressRefused, match=r"may not register address 127\.0\.0\.1"):
        check_address("127.0.0.1", "172.20.0.3", NONE)


def test_a_foreign_address_is_refused_saying_what_would_allow_it():
    with pytest.raises(AddressRefused) as info:
        check_address("10.9.9.9", "172.20.0.3", NONE, identity=ID)
    exc = info.value
    assert exc.reason == "foreign_address"
    assert exc.message == (
        f"{ID} may not register address 10.9.9.9: it connects from 172.20.0.3 and its "
        "certificate does not allow 10.9.9.9"
    )
    assert exc.hint is not None and "--allow-address 10.9.9.9" in exc.hint
    assert '"addresses": ["10.9.9.9"]' in exc.hint
    with pytest.raises(AddressRefused, match=r"may not register address catalog\.example"):
        check_address("catalog.example", "172.20.0.3", NONE)


def test_an_overlong_address_is_refused_without_echoing_it():
    with pytest.raises(AddressRefused) as info:
        check_address("a" * 5000, "172.20.0.3", NONE)
    assert info.value.message == "this sidecar may not register an address of 5000 characters"


def test_addresses_the_leaf_carries_are_allowed():
    leaf = LeafAddresses(frozenset({"10.9.9.9", "2001:db8::5"}), frozenset({"web.example"}))
    assert check_address("10.9.9.9", "172.20.0.3", leaf) == "10.9.9.9"
    assert check_address("::ffff:10.9.9.9", "172.20.0.3", leaf) == "10.9.9.9"
    assert check_address("2001:db8:0::5", None, leaf) == "2001:db8::5"
    assert check_address("Web.Example", "172.20.0.3", leaf) == "Web.Example"
    with pytest.raises(AddressRefused):
        check_address("10.9.9.8", "172.20.0.3", leaf)


def test_without_a_peer_address_an_address_must_be_asked_and_allowed():
    with pytest.raises(AddressRefused) as info:
        check_address("", None, NONE)
    assert info.value.reason == "no_peer_address"
    with pytest.raises(AddressRefused, match="its connection has no IP address"):
        check_address("10.9.9.9", None, NONE)


def test_leaf_addresses_are_read_from_a_real_certificate(tmp_path: Path):
    ca = CertificateAuthority.init(tmp_path / "ca", TD)
    pem = ca.issue(build_csr(generate_key(), ID), ID, addresses=["10.9.9.9", "Web.Example"])
    from cryptography import x509

    leaf = LeafAddresses.of(x509.load_pem_x509_certificate(pem.cert_pem))
    assert leaf == LeafAddresses(frozenset({"10.9.9.9"}), frozenset({"web.example"}))
    assert leaf.all() == ("10.9.9.9", "web.example")
    assert LeafAddresses.of(None) == NONE


class _Peer:
    def __init__(self, peer: str) -> None:
        self._peer = peer

    def peer(self) -> str:
        return self._peer


@pytest.mark.parametrize(
    ("peer", "address"),
    [
        ("ipv4:172.20.0.3:40000", "172.20.0.3"),
        ("ipv6:[::1]:40000", "::1"),
        ("ipv6:%5B::1%5D:40000", "::1"),  # grpcio 1.85
        ("ipv6:%5B::ffff:172.20.0.3%5D:40000", "172.20.0.3"),
        ("ipv6:[::ffff:172.20.0.3]:40000", "172.20.0.3"),
        ("ipv6:%5Bfe80::1%25eth0%5D:40000", "fe80::1"),
        ("unix:/run/gossamer.sock", None),
        ("", None),
    ],
)
def test_peer_address_parses_grpc_peer_strings(peer, address):
    assert peer_address(_Peer(peer)) == address


def test_refusals_are_counted_by_reason():
    text = control_metrics_text(registrations_refused=lambda: {"foreign_address": 3})
    assert 'gossamer_control_registrations_refused_total{reason="foreign_address"} 3.0' in text


def test_other_addresses_no_peer_could_use_are_dropped():
    from gossamer.contract import mesh_pb2
    from gossamer.contract.identity import ServiceKey
    from gossamer.control.registration import endpoint_from_instance

    instance = mesh_pb2.Instance(
        instance_id="web-1",
        port=15006,
        other_addresses=["172.21.0.3", "127.0.0.1", "0.0.0.0", "224.0.0.1", "169.254.0.9"],
    )
    endpoint = endpoint_from_instance(instance, ServiceKey("default", "web"), "172.20.0.3")
    assert endpoint.address == "172.20.0.3" and endpoint.other_addresses == ("172.21.0.3",)
