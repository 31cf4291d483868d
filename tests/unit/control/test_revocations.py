"""The control plane's revocation list, leaf lineage, CRL signer and revocation API."""

from __future__ import annotations

import json
import os
import stat
import time

import pytest
from aiohttp import ClientSession, web

from gossamer.certs import crl
from gossamer.certs.ca import CertificateAuthority
from gossamer.control import lineage as lineage_module
from gossamer.control.api_tokens import ApiTokenStore
from gossamer.control.audit import AuditLog
from gossamer.control.crls import CrlSigner
from gossamer.control.lineage import LINEAGE_FILE, LeafLineage
from gossamer.control.operator_api import ApiSources, OperatorApi
from gossamer.control.revocation_api import RevocationRoutes, add_revocation_routes
from gossamer.control.revocations import REVOCATIONS_FILE, RevocationStore
from gossamer.control.shared_security import LocalSecurity
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
    shared = LocalSecurity(tmp_path / "ca", tmp_path / "data")
    join = shared.tokens
    server = OperatorApi(sources, tokens, shared, audit)
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


# -- descendants: revoking a serial reaches the leaves renewed from it ---------------------


def test_lineage_records_parents_and_finds_descendants_through_expired_leaves(tmp_path):
    clock = Clock()
    lineage = LeafLineage(tmp_path, clock=clock)
    sid = "spiffe://x/ns/default/sa/a"
    lineage.record(1, "tok", sid, clock.now + 10)  # bootstrapped
    lineage.record(2, "tok", sid, clock.now + 20, parent=1)  # renewed from 1
    lineage.record(3, "tok", sid, clock.now + 100, parent=2)  # renewed from 2
    lineage.record(4, "tok", sid, clock.now + 100, parent=1)  # a second renewal of 1
    lineage.record(5, "tok", sid, clock.now + 100)  # another instance of the token
    assert [getattr(lineage.find(n), "parent", None) for n in (1, 2)] == ["", "1"]
    assert {v.serial_number for v in lineage.descendants(1)} == {2, 3, 4}
    assert lineage.descendants(5) == [] and lineage.descendants(99) == []
    clock.now += 30  # 1 and 2 expire: 3 is still reached through 2
    assert {v.serial_number for v in lineage.descendants(1)} == {3, 4}
    assert {v.serial_number for v in LeafLineage(tmp_path, clock=clock).descendants(1)} == {3, 4}


def test_old_lineage_lines_without_a_parent_still_read(tmp_path):
    (tmp_path / LINEAGE_FILE).write_text(
        json.dumps({"serial": "a", "token_id": "t", "spiffe_id": "s", "not_after": 4e9}) + "\n"
    )
    lineage = LeafLineage(tmp_path)
    assert lineage.token_of(0xA) == "t" and getattr(lineage.find(0xA), "parent", None) == ""


def test_compaction_keeps_the_expired_ancestors_of_live_leaves(tmp_path, monkeypatch):
    monkeypatch.setattr(lineage_module, "COMPACT_AFTER", 10)
    monkeypatch.setattr(lineage_module, "KEEP_GENERATIONS", 2)
    clock = Clock()
    lineage = LeafLineage(tmp_path, clock=clock)
    sid = "spiffe://x/ns/default/sa/a"
    for serial in range(1, 8):  # 7 unrelated leaves, soon expired
        lineage.record(serial, "old", sid, clock.now + 5)
    lineage.record(0x20, "t", sid, clock.now + 5)  # a line: 20 -> 21 -> 22 -> 23 (live)
    lineage.record(0x21, "t", sid, clock.now + 5, parent=0x20)
    lineage.record(0x22, "t", sid, clock.now + 5, parent=0x21)
    clock.now += 10
    lineage.record(0x23, "t", sid, clock.now + 100, parent=0x22)
    kept = [json.loads(x)["serial"] for x in (tmp_path / LINEAGE_FILE).read_text().splitlines()]
    assert sorted(kept) == ["21", "22", "23"]  # the live leaf and 2 generations back
    assert [v.serial for v in LeafLineage(tmp_path, clock=clock).descendants(0x21)] == ["23"]


async def test_revoking_a_serial_revokes_the_leaves_renewed_from_it(api):
    session, admin, _tokens, audit, lineage, _join, changes, _ca = api
    now = time.time()
    sid = "spiffe://gossamer.local/ns/default/sa/web"
    lineage.record(0x31, "tok", sid, now + 600)  # the stolen key's leaf
    lineage.record(0x32, "tok", sid, now + 900, parent=0x31)  # renewed at once by the thief
    lineage.record(0x33, "tok", sid, now + 900, parent=0x32)
    lineage.record(0x34, "tok", sid, now + 900)  # unrelated
    async with session.post(
        "/v1/revocations", json={"serial": "31", "reason": "key_compromise"}, headers=bearer(admin)
    ) as r:
        assert r.status == 201
        body = await r.json()
    assert body["serial"] == "31" and body["descendants_revoked"] == ["32", "33"]
    async with session.get("/v1/revocations", headers=bearer(admin)) as r:
        listed = {e["serial"]: e for e in (await r.json())["revoked"]}
    assert set(listed) == {"31", "32", "33"} and listed["32"]["not_after"] == now + 900
    assert listed["33"]["reason"] == "key_compromise"
    audited = [e["target"] for e in audit.tail(10) if e["action"] == "revoke certificate"]
    assert sorted(audited) == ["31", "32", "33"] and changes == [1]
    # an old serial, already revoked, whose line was renewed again since
    lineage.record(0x35, "tok", sid, now + 900, parent=0x33)
    async with session.post("/v1/revocations", json={"serial": "31"}, headers=bearer(admin)) as r:
        body = await r.json()
    assert r.status == 201 and body["already_revoked"] and body["descendants_revoked"] == [
        "32", "33", "35"
    ]  # fmt: skip


# -- unknown expiry ----------------------------------------------------------------------


async def test_an_unknown_leaf_is_kept_for_the_longest_lifetime_or_its_given_expiry(api):
    session, admin, *_ = api
    before = time.time()
    async with session.post("/v1/revocations", json={"serial": "41"}, headers=bearer(admin)) as r:
        entry = await r.json()
    # not max_cert_ttl (3600 here): a leaf from `certs issue --ttl 720h` lives that long
    assert entry["not_after"] >= before + 720 * 3600 and entry["issued_here"] is False
    given = time.time() + 5000
    async with session.post(
        "/v1/revocations", json={"serial": "42", "not_after": given}, headers=bearer(admin)
    ) as r:
        assert r.status == 201 and (await r.json())["not_after"] == given
    for bad in ["soon", True, [1]]:
        async with session.post(
            "/v1/revocations", json={"serial": "43", "not_after": bad}, headers=bearer(admin)
        ) as r:
            assert r.status == 400 and "not_after" in (await r.json())["error"]


def test_certs_issue_ttl_is_capped_at_720h(tmp_path):
    from click.testing import CliRunner

    from gossamer.cli.main import cli

    CertificateAuthority.init(tmp_path / "ca", "gossamer.local")
    csr = tmp_path / "web.csr"
    csr.write_bytes(_csr("spiffe://gossamer.local/ns/default/sa/web"))
    args = ["certs", "issue", "--csr", str(csr), "--dir", str(tmp_path / "ca"),
            "--identity", "spiffe://gossamer.local/ns/default/sa/web"]  # fmt: skip
    over = CliRunner().invoke(cli, [*args, "--ttl", "721h"])
    assert over.exit_code != 0 and "at most 720h, not 721h" in str(over.exception)
    ok = CliRunner().invoke(cli, [*args, "--ttl", "720h"])
    assert ok.exit_code == 0, ok.output


def _csr(uri: str) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def test_certs_revoke_reads_serial_and_expiry_from_a_certificate_file(tmp_path):
    from gossamer.cli.revoke_cmd import _read_certificate
    from gossamer.errors import UsageError

    ca = CertificateAuthority.init(tmp_path / "ca", "gossamer.local")
    issued = ca.issue(_csr("spiffe://gossamer.local/ns/default/sa/web"),
                      "spiffe://gossamer.local/ns/default/sa/web", 7200.0)  # fmt: skip
    pem = tmp_path / "web.pem"
    pem.write_bytes(issued.chain_pem)
    serial, not_after = _read_certificate(pem)
    from cryptography import x509

    leaf = x509.load_pem_x509_certificate(issued.chain_pem)
    assert serial == leaf.serial_number
    assert not_after == leaf.not_valid_after_utc.timestamp()
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(UsageError, match=r"not an X\.509 certificate"):
        _read_certificate(tmp_path / "junk.pem")


# -- an unreadable revocation list ---------------------------------------------------------


def test_an_unreadable_list_at_start_is_an_error_naming_the_file(tmp_path):
    from gossamer.errors import ConfigError

    (tmp_path / REVOCATIONS_FILE).write_text("{not json")
    with pytest.raises(ConfigError) as info:
        RevocationStore(tmp_path).check()
    assert str(tmp_path / REVOCATIONS_FILE) in info.value.message
    assert "repair" in (info.value.hint or "")
    RevocationStore(tmp_path / "absent").check()  # no file yet: nothing revoked, fine


def test_an_unreadable_list_refuses_revocations_and_is_parsed_once_per_change(
    tmp_path, monkeypatch
):
    from gossamer.control.revocations import RevocationsUnavailable

    store = RevocationStore(tmp_path)
    store.revoke([(0x77, time.time() + 600, "", "")], reason="", by="t")
    path = tmp_path / REVOCATIONS_FILE
    path.write_text('{"revoked": [{"serial": "77"}]}')  # a hand edit gone wrong
    parses: list[int] = []
    real = store._parse

    def counting():
        parses.append(1)
        return real()

    monkeypatch.setattr(store, "_parse", counting)
    for _ in range(5):
        assert store.is_revoked(0x77)  # the last good list stays in force
    assert len(parses) == 1  # parsed (and logged) once, not on every RPC
    with pytest.raises(RevocationsUnavailable, match="cannot be read"):
        store.revoke([(0x78, time.time() + 600, "", "")], reason="", by="t")
    with pytest.raises(RevocationsUnavailable):
        store.prune()
    assert path.read_text() == '{"revoked": [{"serial": "77"}]}'  # not overwritten
    path.write_text('{"revoked": []}')  # repaired
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert not store.is_revoked(0x77) and len(parses) == 2
    store.revoke([(0x78, time.time() + 600, "", "")], reason="", by="t")
    assert store.is_revoked(0x78)


async def test_revoking_while_the_list_is_unreadable_is_a_503(api, tmp_path):
    session, admin, *_ = api
    async with session.post("/v1/revocations", json={"serial": "51"}, headers=bearer(admin)) as r:
        assert r.status == 201
    (tmp_path / "data" / REVOCATIONS_FILE).write_text("{broken")
    async with session.post("/v1/revocations", json={"serial": "52"}, headers=bearer(admin)) as r:
        assert r.status == 503
        assert "cannot be read" in (await r.json())["error"]
    assert (tmp_path / "data" / REVOCATIONS_FILE).read_text() == "{broken"


def test_the_crls_are_signed_even_when_pruning_fails(tmp_path, monkeypatch):
    ca = CertificateAuthority.init(tmp_path / "ca", "gossamer.local")
    clock = Clock(ca.generations[0].intermediate.not_valid_before_utc.timestamp() + 3600)
    store = RevocationStore(tmp_path / "data", clock=clock)
    store.revoke([(0x66, clock.now + 600, "", "")], reason="", by="t")
    signer = CrlSigner(lambda: ca, store, max_cert_ttl=3600, clock=clock)

    def broken(before=None):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "prune", broken)
    assert crl.revoked_serials(crl.load_crls(signer.current())) == {0x66}
    assert signer.signings == 1 and not signer.due()


# -- the cap -------------------------------------------------------------------------------


async def test_revocations_beyond_the_cap_are_a_400(api, monkeypatch):
    from gossamer.control import revocations as revocations_module

    monkeypatch.setattr(revocations_module, "MAX_REVOCATIONS", 2)
    session, admin, *_ = api
    for serial in ("61", "62"):
        async with session.post(
            "/v1/revocations", json={"serial": serial}, headers=bearer(admin)
        ) as r:
            assert r.status == 201
    async with session.post("/v1/revocations", json={"serial": "63"}, headers=bearer(admin)) as r:
        assert r.status == 400
        assert "limit of 2" in (await r.json())["error"]
    async with session.post("/v1/revocations", json={"serial": "62"}, headers=bearer(admin)) as r:
        assert r.status == 200  # already revoked: nothing added, not refused


# -- the ca-watcher outlives errors --------------------------------------------------------


async def test_the_ca_watcher_survives_errors_and_cuts_revoked_calls_on_a_ca_change(
    tmp_path, monkeypatch
):
    import asyncio

    from gossamer.control import trust_push
    from gossamer.control.server import ControlPlane

    monkeypatch.setattr(trust_push, "CA_POLL_SECONDS", 0.01)

    class Crls:
        def due(self):
            return True

    class Security:
        def __init__(self):
            self.crls = Crls()
            self.stamp = (1, 1)
            self.signs = 0
            self.cuts = 0
            self.revocations = RevocationStore(tmp_path)

        def ca_stamp(self):
            return self.stamp

        def trust_bundle(self):
            return b"bundle"

        def crl_pem(self):
            self.signs += 1
            if self.signs <= 3:
                raise OSError(5, "Input/output error")
            return b"crl"

        def cut_revoked(self):
            self.cuts += 1
            return 0

        async def follow_token_revocations(self):  # a shared store's, none here
            return 0

        async def publish(self):
            return None

    plane = ControlPlane(tmp_path / "mesh.yaml")
    security = Security()
    plane.security = security  # type: ignore[assignment]
    task = asyncio.create_task(plane.trust.watch())
    try:
        for _ in range(200):
            await asyncio.sleep(0.01)
            if security.signs > 4:
                break
        assert not task.done() and security.signs > 4  # went on signing after the errors
        security.crls.due = lambda: False  # type: ignore[method-assign]
        cuts = security.cuts
        security.stamp = (2, 2)  # a root rotated in, in the tick a revocation landed
        for _ in range(100):
            await asyncio.sleep(0.01)
            if security.cuts > cuts:
                break
        assert security.cuts > cuts
    finally:
        task.cancel()
