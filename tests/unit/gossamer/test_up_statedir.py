"""The fresh state directory: a real CA, real join tokens, and refusing to wipe what is
not ours or is in use."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from gossamer.certs.ca import CertificateAuthority
from gossamer.certs.tokens import TokenStore
from gossamer.errors import UsageError
from gossamer.up.layout import SERVICES, FreePorts, loopback_layout
from gossamer.up.statedir import MARKER, prepare, running_pid


def layout():
    ports = FreePorts()
    result = loopback_layout(ports)
    ports.release()
    return result


def test_prepare_makes_ca_tokens_and_mesh_file(tmp_path: Path):
    state = prepare(tmp_path / "up", layout())
    assert (state.root / MARKER).exists() and state.logs.is_dir()
    assert stat.S_IMODE(state.root.stat().st_mode) == 0o700
    ca = CertificateAuthority.load(state.ca_dir)
    assert ca.trust_domain == "gossamer.local"
    store = TokenStore(state.ca_dir)
    for service in SERVICES:
        path = state.token_file(service)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        record = store.verify(path.read_text().strip(), service=service, namespace="default")
        assert record.service == service and record.ca_pin == ca.root_pin()
        # each admits exactly its service's instances (catalog has two replicas)
        assert record.uses == (2 if service == "catalog" else 1)
    assert "api_listen" in state.mesh_file.read_text()
    assert json.loads(state.status_file.read_text()) == {"pid": os.getpid(), "ready": False}


def test_each_run_starts_fresh(tmp_path: Path):
    first = prepare(tmp_path / "up", layout())
    pin = CertificateAuthority.load(first.ca_dir).root_pin()
    (first.logs / "web.log").write_text("old")
    second = prepare(tmp_path / "up", layout())
    assert CertificateAuthority.load(second.ca_dir).root_pin() != pin
    assert not (second.logs / "web.log").exists()


def test_a_folder_that_is_not_ours_is_never_wiped(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="not made by gossamer up"):
        prepare(tmp_path, layout())
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_folder_in_use_by_a_live_run_is_refused(tmp_path: Path):
    state = prepare(tmp_path / "up", layout())
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        state.write_status({"pid": other.pid, "ready": True})
        assert running_pid(state.root) == other.pid
        with pytest.raises(UsageError, match=f"pid {other.pid}"):
            prepare(tmp_path / "up", layout())
    finally:
        other.kill()
        other.wait()
    assert running_pid(state.root) is None
    prepare(tmp_path / "up", layout())  # a dead run's folder is reused
