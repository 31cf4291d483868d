"""Pure pieces of what replicas share: CRLs merged per issuer, token uses decided once
(`admit`), and the etcd mirror's ordering of its own writes and the watch's echoes."""

from __future__ import annotations

import datetime as dt

import pytest

from gossamer.certs import crl
from gossamer.certs.ca import CertificateAuthority
from gossamer.certs.errors import TokenRevoked, TokenUsedUp
from gossamer.certs.intermediates import issue_local
from gossamer.certs.token_rules import admit, check_presented, mint, parse_token
from gossamer.control.etcd_mirror import EtcdMirror

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def crl_of(ca: CertificateAuthority, serials: list[int], now: dt.datetime) -> dict[str, bytes]:
    [(issuer, key)] = ca.issuers()
    entries = [crl.RevokedSerial(s, now) for s in serials]
    built = crl.build_crl(issuer, key, entries, validity=dt.timedelta(hours=2), now=now)
    return {crl.issuer_id(issuer): crl.crls_pem([built])}


def test_merge_crls_takes_own_over_shared_drops_expired_and_junk(tmp_path):
    root = CertificateAuthority.init(tmp_path / "root", "gossamer.local")
    a = issue_local(root, tmp_path / "a", "node-a")
    b = issue_local(root, tmp_path / "b", "node-b")
    own_old, own_new = crl_of(a, [], NOW), crl_of(a, [7], NOW)
    theirs = crl_of(b, [9], NOW)
    shared = {**own_old, **theirs, "junk": b"not a crl"}
    merged = crl.load_crls(crl.merge_crls(own_new, shared, NOW))
    assert sorted(sorted(e.serial_number for e in c) for c in merged) == [[7], [9]]
    # the same inputs in any order give the same bytes (one ROOTCA version everywhere)
    again = crl.merge_crls(own_new, dict(reversed(list(shared.items()))), NOW)
    assert again == crl.merge_crls(own_new, shared, NOW)
    later = NOW + dt.timedelta(hours=3)  # b's CRL expired; b is gone
    assert len(crl.load_crls(crl.merge_crls(own_new, theirs, later))) == 1


def test_admit_takes_a_use_once_per_instance():
    token, record = mint("web", "sha256:" + "0" * 64, namespace="default", now=0.0, ttl=60,
                         uses=2, addresses=(), taken={})  # fmt: skip
    assert check_presented(record, parse_token(token), 1.0, service="web") == record
    first = admit(record, "i-1")
    assert first is not None and first.instances == ("i-1",)
    assert admit(first, "i-1") is None  # a restart takes none
    second = admit(first, "i-2")
    assert second is not None and second.used_up
    with pytest.raises(TokenUsedUp):
        admit(second, "i-3")
    with pytest.raises(TokenRevoked):
        admit(record.__class__(**{**record.__dict__, "revoked": True}), "i-1")


class _Store:  # the mirror's store is used only by start(); apply() needs none
    pass


def test_mirror_keeps_the_newest_value_per_key():
    mirror = EtcdMirror(_Store(), b"/p.ca/")  # type: ignore[arg-type]
    changes: list[int] = []
    mirror.on_change = lambda: changes.append(mirror.revision)
    mirror.apply(b"crls/a", b"v2", 10)  # our own write, applied at once
    mirror.apply(b"crls/b", b"x", 9)  # the watch delivers another key's older change
    mirror.apply(b"crls/a", b"v1", 8)  # ... and an echo older than our write
    assert mirror.values == {b"crls/a": b"v2", b"crls/b": b"x"}
    mirror.apply(b"crls/a", None, 11)
    assert mirror.items(b"crls/") == {b"b": b"x"}
    assert mirror.revision == 11 and changes


def test_only_a_bundle_sharing_a_root_may_replace_the_mesh_s(tmp_path):
    from gossamer.control.etcd_security import same_mesh

    root = CertificateAuthority.init(tmp_path / "root", "gossamer.local")
    before = root.trust_bundle_pem()
    root.rotate_root(propagation=0)
    rotated = root.trust_bundle_pem()
    root.retire_root()
    assert same_mesh(before, rotated) and same_mesh(rotated, root.trust_bundle_pem())
    stranger = CertificateAuthority.init(tmp_path / "other", "gossamer.local")
    assert not same_mesh(rotated, stranger.trust_bundle_pem())
    assert same_mesh(b"junk", stranger.trust_bundle_pem())
