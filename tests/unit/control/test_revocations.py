"""The control plane's revocation list, leaf lineage, CRL signer and revocation API."""

from __future__ import annotations

import json
import stat
import time

import pytest
from aiohttp import ClientSession, web

from gossamer.certs import crl
from gossamer.certs.ca import CertificateAuthority
from gossamer.certs.tokens import TokenStore
from gossamer.control import lineage as lineage_module
from gossamer.control.api_tokens import ApiTokenStore
from gossamer.control.audit import AuditLog
from gossamer.control.crls import CrlSigner
from gossamer.control.lineage import LINEAGE_FILE, LeafLineage
from gossamer.control.operator_api import ApiSources, OperatorApi
from gossamer.control.revocation_api import RevocationRoutes, add_revocation_routes
from gossamer.control.revocations import REVOCATIONS_FILE, RevocationStore
from gossamer.discovery.model import RegistryState
from tests.helpers.procs import free_port


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_revocations_survive_a_new_store_and_are_private(tmp_path):
    clock = Clock()
    store = RevocationStore(tmp_path, clock=clock)
    [(entry, new)] = store.revoke(
        [(0xABC, clock.now + 100, "spiffe://x/ns/default/sa/a", "tok1")], reason="lost", by="ops"
    )
    assert new and entry.serial == "abc" and entry.by == "ops" and entry.reason == "lost"
    [(again, new)] = store.revoke([(0xABC, clock.now + 100, "", "")], reason="x", by="y")
    assert not new and again.reason == "lost"
    fresh = RevocationStore(tmp_path, clock=clock)
    assert fresh.is_revoked(0xABC) and not fresh.is_revoked(0xABD)
    assert [e.serial for e in fresh.list()] == ["abc"]
    assert stat.S_IMODE((tmp_path / REVOCATIONS_FILE).stat().st_mode) == 0o600


def test_entries_of_expired_leaves_are_dropped(tmp_path):
    clock = Clock()
    store = RevocationStore(tmp_path, clock=clock)
    store.revoke([(1, clock.now + 10, "", ""), (2, clock.now + 1000, "", "")], reason="", by="a")
    stamp = store.stamp()
    clock.now += 11
    assert [e.serial for e in store.list()] == ["2"]
    assert not store.is_revoked(1)
    assert store.prune() == 1 and store.stamp() != stamp
    raw = json.loads((tmp_path / REVOCATIONS_FILE).read_text())
    assert [e["serial"] for e in raw["revoked"]] == ["2"]


def test_lineage_follows_renewals_and_forgets_expired_leaves(tmp_path):
    clock = Clock()
    lineage = LeafLineage(tmp_path, clock=clock)
    lineage.record(10, "tok1", "spiffe://x/ns/default/sa/a", clock.now + 100)
    lineage.record(11, lineage.token_of(10), "spiffe://x/ns/default/sa/a", clock.now + 200)
    lineage.record(12, "tok2", "spiffe://x/ns/default/sa/b", clock.now + 200)
    assert [leaf.serial_number for leaf in lineage.leaves_of("tok1")] == [10, 11]
    assert lineage.token_of(99) == ""
    clock.now += 150
    assert [leaf.serial_number for leaf in lineage.leaves_of("tok1")] == [11]
    assert lineage.get(10) is None and lineage.get(11) is not None  # 10 has expired


def test_crl_signer_signs_once_until_something_changes(tmp_path):
    ca = CertificateAuthority.init(tmp_path / "ca", "gossamer.local")
    clock = Clock(ca.generations[0].intermediate.not_valid_before_utc.timestamp() + 3600)
    store = RevocationStore(tmp_path / "data", clock=clock)
    signer = CrlSigner(lambda: ca, store, max_cert_ttl=3600, clock=clock)
    first = signer.current()
    assert crl.revoked_serials(crl.load_crls(first)) == frozenset()
    assert signer.current() == first and signer.signings == 1 and not signer.due()
    store.revoke([(0x55, clock.now + 600, "", "")], reason="", by="t")
    assert signer.due()
    second = signer.current()
    assert crl.revoked_serials(crl.load_crls(second)) == {0x55}
    clock.now += signer.validity.total_seconds() / 2
    assert signer.due()  # half its validity gone: signed again before anyone holds it expired
    ca.rotate_root(propagation=0)
    assert len(crl.load_crls(signer.current())) == 2  # one per issuer


@pytest.fixture
async def api(tmp_path):
    ca = CertificateAuthority.init(tmp_path / "ca", "gossamer.local")

    async def state():
        return RegistryState(0)

    sources = ApiSources(registry_state=state, sidecars=list, config_info=dict, ca_pin=ca.root_pin)
    tokens = ApiTokenStore(tmp_path / "data")
    admin = tokens.ensure_admin()
    audit = AuditLog(tmp_path / "data")
    join = TokenStore(tmp_path / "ca", uses_dir=tmp_path / "data")
    server = OperatorApi(sources, tokens, join, audit)
    revocations = RevocationStore(tmp_path / "data")
    lineage = LeafLineage(tmp_path / "data")
    changes: list[int] = []
    app = server.app()
    add_revocation_routes(
        app,
        RevocationRoutes(
            server, revocations, lineage, max_cert_ttl=3600, on_change=lambda: changes.append(1)
        ),
    )
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    async with ClientSession(base_url=f"http://127.0.0.1:{port}") as session:
        yield session, admin, tokens, audit, lineage, join, changes, ca
    await runner.cleanup()


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


async def test_revoke_by_serial_needs_an_operator_and_is_audited(api):
    session, admin, tokens, audit, _lineage, _join, changes, _ca = api
    viewer = tokens.create("v", "viewer")
    body = {"serial": "AB:CD", "reason": "key_compromise"}
    async with session.post("/v1/revocations", json=body, headers=bearer(viewer)) as r:
        assert r.status == 403
    async with session.post("/v1/revocations", json=body, headers=bearer(admin)) as r:
        assert r.status == 201
        made = await r.json()
    assert made["serial"] == "abcd" and made["issued_here"] is False and changes == [1]
    async with session.post("/v1/revocations", json=body, headers=bearer(admin)) as r:
        assert r.status == 200 and (await r.json())["already_revoked"] is True
    assert changes == [1]  # nothing new, nothing pushed
    async with session.get("/v1/revocations", headers=bearer(viewer)) as r:
        listed = await r.json()
    assert [e["serial"] for e in listed["revoked"]] == ["abcd"]
    entry = [e for e in audit.tail(10) if e["action"] == "revoke certificate"]
    assert entry[0]["target"] == "abcd" and entry[0]["reason"] == "key_compromise"


@pytest.mark.parametrize("serial", ["not-hex", "", "0", "f" * 41, 5])
async def test_a_bad_serial_is_a_400_saying_so(api, serial):
    session, admin, *_ = api
    async with session.post("/v1/revocations", json={"serial": serial}, headers=bearer(admin)) as r:
        assert r.status == 400
        assert "serial" in (await r.json())["error"]


async def test_revoking_a_join_token_revokes_its_leaves(api):
    session, admin, _tokens, _audit, lineage, join, changes, ca = api
    _secret, record = join.create("web", ca.root_pin(), ttl=600)
    _other_secret, other = join.create("web", ca.root_pin(), ttl=600)

    now = time.time()
    lineage.record(0x10, record.token_id, "spiffe://gossamer.local/ns/default/sa/web", now + 60)
    lineage.record(0x11, record.token_id, "spiffe://gossamer.local/ns/default/sa/web", now + 90)
    lineage.record(0x12, other.token_id, "spiffe://gossamer.local/ns/default/sa/web", now + 90)
    async with session.delete(f"/v1/tokens/{record.token_id}", headers=bearer(admin)) as r:
        assert r.status == 200
        body = await r.json()
    assert body["status"] == "revoked" and body["certificates_revoked"] == ["10", "11"]
    async with session.delete(
        f"/v1/tokens/{other.token_id}?keep_certificates=true", headers=bearer(admin)
    ) as r:
        body = await r.json()
    assert body["certificates_kept"] == ["12"] and "certificates_revoked" not in body
    async with session.get("/v1/revocations", headers=bearer(admin)) as r:
        listed = await r.json()
    assert {e["serial"]: e["token_id"] for e in listed["revoked"]} == {
        "10": record.token_id,
        "11": record.token_id,
    }
    assert changes == [1]


def test_an_unreadable_list_keeps_the_last_one_read(tmp_path):
    store = RevocationStore(tmp_path)
    store.revoke([(0x77, time.time() + 600, "", "")], reason="", by="t")
    assert store.is_revoked(0x77)
    (tmp_path / REVOCATIONS_FILE).write_text("{not json")
    assert store.is_revoked(0x77)  # neither every caller refused nor the revocation lost
    (tmp_path / LINEAGE_FILE).write_text("[]\n{not json\n")
    assert LeafLineage(tmp_path).token_of(0x77) == ""


def test_lineage_is_an_append_only_log_compacted_when_mostly_expired(tmp_path, monkeypatch):
    monkeypatch.setattr(lineage_module, "COMPACT_AFTER", 10)
    clock = Clock()
    lineage = LeafLineage(tmp_path, clock=clock)
    for serial in range(1, 11):
        lineage.record(serial, "old", "spiffe://x/ns/default/sa/a", clock.now + 10)
    log_file = tmp_path / LINEAGE_FILE
    assert len(log_file.read_text().splitlines()) == 10  # one line a leaf, nothing rewritten
    other = LeafLineage(tmp_path, clock=clock)  # another replica on the same directory
    other.record(11, "new", "spiffe://x/ns/default/sa/b", clock.now + 100)
    assert lineage.token_of(11) == "new"  # the index follows lines appended by others
    clock.now += 50  # the ten "old" leaves expire
    lineage.record(12, "new", "spiffe://x/ns/default/sa/b", clock.now + 100)
    assert [json.loads(x)["serial"] for x in log_file.read_text().splitlines()] == ["b", "c"]
    assert [leaf.serial_number for leaf in other.leaves_of("new")] == [11, 12]  # re-read
    assert log_file.stat().st_mode & 0o777 == 0o600


def test_a_torn_last_line_costs_only_itself(tmp_path):
    lineage = LeafLineage(tmp_path)
    lineage.record(1, "t1", "spiffe://x/ns/default/sa/a", time.time() + 100)
    with (tmp_path / LINEAGE_FILE).open("a") as f:
        f.write('{"serial": "2", "tok')  # a crash in the middle of a line
    lineage.record(3, "t3", "spiffe://x/ns/default/sa/a", time.time() + 100)
    fresh = LeafLineage(tmp_path)
    assert (fresh.token_of(1), fresh.token_of(2), fresh.token_of(3)) == ("t1", "", "t3")
