"""The sidecar's state directory (proxy/agent/state.py): safe directories only, the
identity round trip and every reason a stored identity is ignored."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import stat

import pytest

from gossamer.proxy.agent.state import StateDir, StateError, StoredIdentity, check_identity
from tests.helpers.pki import make_ca, make_workload


@pytest.fixture(scope="module")
def workload(tmp_path_factory):
    root = tmp_path_factory.mktemp("pki")
    return make_workload(make_ca(root / "ca"), "web", root / "out", ttl=3600)


def stored(workload, **changes) -> StoredIdentity:
    identity = StoredIdentity(
        service="web",
        namespace="default",
        instance_id="web-1",
        spiffe_id=workload.spiffe_id,
        chain_pem=workload.chain_pem.decode(),
        key_pem=workload.key_pem.decode(),
        bundle_pem=workload.bundle_pem.decode(),
        crl_pem="",
        received=1_700_000_000.0,
    )
    return dataclasses.replace(identity, **changes)


def test_a_missing_directory_is_created_0700(tmp_path):
    path = tmp_path / "a" / "state"
    StateDir.open(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o700


def test_an_open_directory_is_refused_with_the_fix(tmp_path):
    path = tmp_path / "state"
    path.mkdir(mode=0o755)
    path.chmod(0o755)
    with pytest.raises(StateError, match="open to other users") as info:
        StateDir.open(path)
    assert "chmod 700" in (info.value.hint or "")


def test_a_symbolic_link_is_refused(tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(StateError, match="symbolic link"):
        StateDir.open(tmp_path / "link")


def test_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StateError, match="not a directory"):
        StateDir.open(tmp_path / "file")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make another user's directory")
def test_another_users_directory_is_refused(tmp_path):
    path = tmp_path / "state"
    path.mkdir(mode=0o700)
    os.chown(path, 4242, 4242)
    with pytest.raises(StateError, match="belongs to uid 4242"):
        StateDir.open(path)


def test_identity_round_trip_with_0600_files(tmp_path, workload):
    state = StateDir.open(tmp_path / "s")
    state.save_identity(stored(workload))
    mode = stat.S_IMODE(os.stat(tmp_path / "s" / "identity.json").st_mode)
    assert mode == 0o600
    assert state.load_identity("web", "default", "web-1") == stored(workload)


@pytest.mark.parametrize(
    ("who", "reason"),
    [
        (("catalog", "default", "web-1"), "not catalog.default"),
        (("web", "shop", "web-1"), "not web.shop"),
        (("web", "default", "web-2"), "instance 'web-1'"),
    ],
)
def test_another_sidecars_identity_is_ignored(workload, who, reason):
    now = dt.datetime.now(dt.UTC)
    service, namespace, instance = who
    assert reason in (check_identity(stored(workload), service, namespace, instance, now) or "")


def test_an_expired_or_foreign_leaf_is_ignored(tmp_path, workload):
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    assert "expired" in (check_identity(stored(workload), "web", "default", "web-1", later) or "")
    other = make_workload(make_ca(tmp_path / "ca2"), "web", tmp_path / "o")
    now = dt.datetime.now(dt.UTC)
    mixed = stored(workload, key_pem=other.key_pem.decode())
    assert "does not match" in (check_identity(mixed, "web", "default", "web-1", now) or "")
    wrong_id = stored(workload, spiffe_id="spiffe://gossamer.local/ns/default/sa/x")
    assert "does not carry" in (check_identity(wrong_id, "web", "default", "web-1", now) or "")
    assert check_identity(stored(workload), "web", "default", "web-1", now) is None


def test_malformed_files_are_ignored_not_fatal(tmp_path, workload):
    state = StateDir.open(tmp_path / "s")
    (tmp_path / "s" / "identity.json").write_text("{not json")
    assert state.load_identity("web", "default", "web-1") is None
    raw = json.loads(stored(workload).to_json())
    raw["received"] = "yesterday"
    (tmp_path / "s" / "identity.json").write_text(json.dumps(raw))
    assert state.load_identity("web", "default", "web-1") is None


def test_stored_configuration_belongs_to_its_sidecar(tmp_path):
    state = StateDir.open(tmp_path / "s")
    state.save_xds("web", "default", "web-1", {"t": {"version": "1", "resources": []}})
    assert state.load_xds("web", "default", "web-1") == {"t": {"version": "1", "resources": []}}
    assert state.load_xds("web", "default", "web-2") is None
