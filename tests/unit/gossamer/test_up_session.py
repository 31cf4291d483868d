"""`gossamer up` refuses bad starts before starting anything."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from gossamer.errors import UsageError
from gossamer.up.session import UpOptions, run


def test_a_state_dir_that_is_not_ours_stops_the_run_before_anything_starts(tmp_path: Path):
    (tmp_path / "keep.txt").write_text("mine")
    out = io.StringIO()
    with pytest.raises(UsageError, match="not made by gossamer up"):
        run(UpOptions(state_dir=tmp_path), out)
    assert (tmp_path / "keep.txt").read_text() == "mine"
    assert "starting" not in out.getvalue() and "stopping" not in out.getvalue()


def test_port_base_does_not_apply_to_isolate(tmp_path: Path, monkeypatch):
    monkeypatch.setattr("gossamer.up.netns.require_root", lambda *args: None)
    with pytest.raises(UsageError, match="--port-base"):
        run(UpOptions(state_dir=tmp_path / "s", isolate=True, port_base=20000), io.StringIO())
    assert not (tmp_path / "s").exists()
