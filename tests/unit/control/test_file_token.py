"""A token the control plane reads from a file (`observability.prometheus_token_file`):
whatever the file holds is a viewer token, so a file someone else could write is not
used, and the reason is kept for the start-up log."""

from __future__ import annotations

import os

from gossamer.control.api_tokens import FileToken

TOKEN = "gsa1_" + "x" * 40


def test_a_private_file_gives_its_token_and_follows_changes(tmp_path):
    path = tmp_path / "prometheus.token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o644)
    token = FileToken("prometheus", "viewer", path)
    first = token.record()
    assert first is not None and first.role == "viewer" and token.error is None
    path.write_text("gsa1_" + "y" * 40)
    second = token.record()
    assert second is not None and second.sha256 != first.sha256


def test_a_file_others_can_write_is_not_a_token(tmp_path):
    path = tmp_path / "prometheus.token"
    path.write_text(TOKEN)
    for mode in (0o666, 0o664):
        path.chmod(mode)
        token = FileToken("prometheus", "viewer", path)
        assert token.record() is None
        assert token.error is not None and "writable by its group or by everyone" in token.error


def test_a_symbolic_link_is_not_followed(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text(TOKEN)
    target.chmod(0o600)
    link = tmp_path / "prometheus.token"
    os.symlink(target, link)
    token = FileToken("prometheus", "viewer", link)
    assert token.record() is None and "symbolic link" in (token.error or "")
