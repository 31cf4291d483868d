"""The embedded store's file: atomic replacement, strict reading, stray temporaries."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gossamer.contract.identity import ServiceKey
from gossamer.discovery import snapshot_file
from gossamer.discovery.model import Endpoint, Service, ServicePort
from gossamer.errors import ConfigError

SVC = Service("catalog", ports=(ServicePort(8080, "grpc", "api"),))
EP = Endpoint(
    ServiceKey("default", "catalog"), "i-1", "10.0.0.1", 8080, zone="z", labels=(("v", "2"),)
)


def test_round_trip(tmp_path: Path):
    path = tmp_path / "registry.json"
    snapshot_file.write_atomic(path, snapshot_file.encode(7, [SVC], [EP]))
    snap = snapshot_file.read(path)
    assert snap == snapshot_file.Snapshot(7, (SVC,), (EP,))
    assert list(tmp_path.iterdir()) == [path]  # no temporary left behind


def test_missing_file_is_none(tmp_path: Path):
    assert snapshot_file.read(tmp_path / "nope.json") is None


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b'{"format": 1, "revision": 3, "serv', "not valid JSON"),
        (b"[]", "not a registry file"),
        (b'{"format": 2}', "not a registry file"),
        (b'{"format": 1, "revision": -1, "services": [], "endpoints": []}', "damaged"),
        (b'{"format": 1, "revision": 1, "services": [{"nme": "x"}], "endpoints": []}', "damaged"),
        (
            b'{"format": 1, "revision": 1, "services": [{"name": "Bad_Name"}], "endpoints": []}',
            "DNS-1123",
        ),
    ],
)
def test_damaged_files_are_reported_with_their_name(tmp_path: Path, content: bytes, words: str):
    path = tmp_path / "registry.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        snapshot_file.read(path)
    assert str(path) in info.value.message and words in info.value.message
    assert path.read_bytes() == content  # reported, not replaced


def test_failed_write_keeps_the_old_file_and_cleans_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    path = tmp_path / "registry.json"
    snapshot_file.write_atomic(path, snapshot_file.encode(1, [SVC], []))

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        snapshot_file.write_atomic(path, snapshot_file.encode(2, [], []))
    assert json.loads(path.read_bytes())["revision"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["registry.json"]


def test_stale_temporaries_are_removed(tmp_path: Path):
    (tmp_path / ".registry-abc.tmp").write_text("half")
    (tmp_path / "other.tmp").write_text("not ours")
    assert snapshot_file.remove_stale_temporaries(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.tmp"]
