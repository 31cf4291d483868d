"""Where `gossamer stat/edges/top` get their Prometheus, API address and token from."""

from __future__ import annotations

import pytest

from gossamer.cli.observe_cmd import resolve
from gossamer.errors import ConfigError, UsageError


def test_flags_win_and_defaults_apply(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no mesh.yaml here
    r = resolve(None, None, None, None, None, None)
    assert (r.prometheus, r.api, r.token, r.window) == (None, "http://127.0.0.1:15014", None, 60)
    r = resolve("http://p:9090", "http://cp:1", "tok", None, None, "30s")
    assert (r.prometheus, r.api, r.token, r.window) == ("http://p:9090", "http://cp:1", "tok", 30)


def test_mesh_yaml_gives_prometheus_api_and_admin_token(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "admin-token").write_text("gsa1_secret\n")
    (tmp_path / "mesh.yaml").write_text(
        "control:\n  api_listen: 127.0.0.1:16000\n  data_dir: data\n"
        "observability:\n  prometheus_url: http://prom:9090\n  window: 2m\n"
    )
    monkeypatch.chdir(tmp_path)
    r = resolve(None, None, None, None, None, None)
    assert r.prometheus == "http://prom:9090" and r.api == "http://127.0.0.1:16000"
    assert r.token == "gsa1_secret" and r.window == 120


def test_user_mistakes_are_clear(tmp_path):
    with pytest.raises(UsageError, match="window"):
        resolve(None, None, None, None, None, "1s")
    with pytest.raises(UsageError, match="window"):
        resolve(None, None, None, None, None, "soon")
    with pytest.raises(UsageError, match="token file"):
        resolve(None, None, None, tmp_path / "missing", None, None)
    with pytest.raises(ConfigError, match=r"missing\.yaml"):
        resolve(None, None, None, None, tmp_path / "missing.yaml", None)
