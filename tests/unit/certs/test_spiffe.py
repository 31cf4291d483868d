from __future__ import annotations

import pytest

from gossamer.certs.errors import InvalidSpiffeId
from gossamer.certs.spiffe import SpiffeId, spiffe_id_from_peercert


def test_round_trip():
    sid = SpiffeId.parse("spiffe://gossamer.local/ns/shop/sa/catalog")
    assert (sid.trust_domain, sid.namespace, sid.service) == ("gossamer.local", "shop", "catalog")
    assert str(sid) == "spiffe://gossamer.local/ns/shop/sa/catalog"


@pytest.mark.parametrize(
    "uri",
    [
        "https://gossamer.local/ns/a/sa/b",
        "spiffe://gossamer.local/a/b",
        "spiffe://gossamer.local/ns/a/sa/b/c",
        "spiffe://Gossamer.local/ns/a/sa/b",
        "spiffe://gossamer.local/ns/A/sa/b",
        "spiffe:///ns/a/sa/b",
    ],
)
def test_rejects(uri):
    with pytest.raises(InvalidSpiffeId):
        SpiffeId.parse(uri)


def test_peercert_dict():
    one = {"subjectAltName": (("URI", "spiffe://td/ns/a/sa/b"), ("DNS", "x"))}
    two = {"subjectAltName": (("URI", "spiffe://td/ns/a/sa/b"), ("URI", "spiffe://td/ns/a/sa/c"))}
    assert spiffe_id_from_peercert(one) == "spiffe://td/ns/a/sa/b"
    assert spiffe_id_from_peercert(two) is None
    assert spiffe_id_from_peercert({}) is None
    assert spiffe_id_from_peercert(None) is None
