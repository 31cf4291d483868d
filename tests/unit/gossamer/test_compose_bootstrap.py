"""The `.gossamer/` folder: a real CA, real join tokens, generated configuration."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from gossamer.certs.ca import CertificateAuthority
from gossamer.certs.errors import TokenWrongService
from gossamer.certs.tokens import TokenStore, parse_token
from gossamer.compose import generated_files
from gossamer.compose.bootstrap import write_bootstrap
from gossamer.compose.inject import inject_text
from gossamer.compose.plan import InjectOptions
from gossamer.errors import UsageError
from gossamer.yamlconf import load_file

TEXT = """\
services:
  web:
    image: w
    ports: ["8080:8000"]
  Cache_1:
    image: redis
    expose: [6379]
"""


def plan_for(options: InjectOptions):
    return inject_text(TEXT, options, source="compose.yaml").plan


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_first_run_creates_ca_tokens_and_config(tmp_path: Path):
    options = InjectOptions(observability=True)
    report = write_bootstrap(tmp_path, plan_for(options), options, source="compose.yaml")
    folder = tmp_path / ".gossamer"
    assert mode(folder) == 0o700
    assert (folder / ".gitignore").read_text().endswith("*\n")
    ca = CertificateAuthority.load(folder / "ca")
    assert report.ca_created and ca.trust_domain == report.trust_domain == "gossamer.local"
    assert sorted(report.tokens_created) == ["Cache_1", "web"]
    store = TokenStore(folder / "ca")
    for name, mesh_name in (("web", "web"), ("Cache_1", "cache-1")):
        path = folder / "tokens" / f"{name}.token"
        assert mode(path) == 0o644  # readable by the sidecar's UID inside the container
        token = path.read_text().strip()
        assert parse_token(token).ca_pin == ca.root_pin()
        assert store.verify(token, service=mesh_name, namespace="default").service == mesh_name
    with pytest.raises(TokenWrongService):
        store.verify((folder / "tokens" / "web.token").read_text().strip(), service="cache-1")
    mesh = load_file(folder / "mesh.yaml")
    assert mesh.child("trust_domain").string() == "gossamer.local"
    assert mesh.child("control").child("ca_dir").string() == "/etc/gossamer/ca"
    services = {s.child("name").string(): s for s in mesh.child("services").items()}
    assert sorted(services) == ["cache-1", "web"]
    assert services["web"].child("ports").value == [{"port": 8000, "protocol": "http"}]
    assert services["cache-1"].child("ports").value == [{"port": 6379, "protocol": "tcp"}]
    prom = load_file(folder / "prometheus.yml")
    (job,) = [j for j in prom.child("scrape_configs").items() if j.has("http_sd_configs")]
    assert job.child("http_sd_configs").value[0]["url"] == (
        "http://gossamer-control:15014/v1/http_sd"
    )
    # Prometheus reads http_sd with a viewer token that the control plane takes from
    # the same file (a secret mounted in both at the same place)
    assert job.child("http_sd_configs").value[0]["authorization"] == {
        "type": "Bearer",
        "credentials_file": "/run/gossamer/prometheus/token",
    }
    observability = mesh.child("observability")
    assert observability.child("prometheus_token_file").string() == (
        "/run/gossamer/prometheus/token"
    )
    token_file = folder / "prometheus.token"
    assert mode(token_file) == 0o644  # Prometheus runs as 65534, inside the 0700 folder
    first = token_file.read_text()
    assert first.startswith("gsa1_") and len(first.strip()) > 40
    assert report.prometheus_token == "created"
    again = write_bootstrap(tmp_path, plan_for(options), options, source="compose.yaml")
    assert again.prometheus_token == "kept" and token_file.read_text() == first


def test_bootstrap_volume_writes_prometheus_token_once(tmp_path: Path):
    from gossamer.compose.bootstrap import bootstrap_volume

    path = tmp_path / "prom" / "token"
    owner = (os.getuid(), os.getgid())  # the container gives it to 65534 (nobody)
    _created, report = bootstrap_volume(
        tmp_path / "ca", [], trust_domain="demo.local", namespace="shop",
        prometheus_token=path, prometheus_owner=owner,
    )  # fmt: skip
    assert report.prometheus_token == "created" and mode(path) == 0o400
    first = path.read_text()
    _created, report = bootstrap_volume(
        tmp_path / "ca", [], trust_domain="demo.local", namespace="shop", prometheus_token=path
    )
    assert report.prometheus_token == "kept" and path.read_text() == first
    assert report.created == [] and report.kept == []  # no join token counted for it


def test_second_run_keeps_everything(tmp_path: Path):
    options = InjectOptions()
    plan = plan_for(options)
    write_bootstrap(tmp_path, plan, options, source="compose.yaml")
    before = {p: p.read_bytes() for p in (tmp_path / ".gossamer").rglob("*") if p.is_file()}
    report = write_bootstrap(tmp_path, plan, options, source="compose.yaml")
    after = {p: p.read_bytes() for p in (tmp_path / ".gossamer").rglob("*") if p.is_file()}
    assert before == after
    assert not report.ca_created and not report.tokens_created and not report.files_written
    assert sorted(report.tokens_kept) == ["Cache_1", "web"]


def test_tokens_close_to_expiry_are_replaced(tmp_path: Path):
    options = InjectOptions()
    plan = plan_for(options)
    write_bootstrap(tmp_path, plan, options, source="c", token_ttl=2 * 86400)
    old = (tmp_path / ".gossamer" / "tokens" / "web.token").read_text()
    later = time.time() + 1.5 * 86400
    report = write_bootstrap(
        tmp_path, plan, options, source="c", token_ttl=2 * 86400, clock=lambda: later
    )
    assert sorted(report.tokens_created) == ["Cache_1", "web"]
    assert (tmp_path / ".gossamer" / "tokens" / "web.token").read_text() != old


def test_an_edited_generated_file_is_kept(tmp_path: Path):
    options = InjectOptions()
    write_bootstrap(tmp_path, plan_for(options), options, source="c")
    mesh = tmp_path / ".gossamer" / "mesh.yaml"
    assert generated_files.untouched(mesh.read_text())
    edited = mesh.read_text() + "  - name: extra\n    ports: [{port: 1, protocol: tcp}]\n"
    mesh.write_text(edited)
    assert not generated_files.untouched(edited)
    only_web = InjectOptions(only=("web",))
    report = write_bootstrap(tmp_path, plan_for(only_web), only_web, source="c")
    assert report.files_kept == [".gossamer/mesh.yaml"] and mesh.read_text() == edited


def test_trust_domain_of_an_existing_ca_wins(tmp_path: Path):
    options = InjectOptions()
    plan = plan_for(options)
    report = write_bootstrap(tmp_path, plan, options, source="c", trust_domain="shop.test")
    assert report.trust_domain == "shop.test"
    assert write_bootstrap(tmp_path, plan, options, source="c").trust_domain == "shop.test"
    with pytest.raises(UsageError, match=r"shop\.test"):
        write_bootstrap(tmp_path, plan, options, source="c", trust_domain="other.test")


def test_bootstrap_volume_creates_once_then_keeps(tmp_path: Path):
    from gossamer.compose.bootstrap import bootstrap_volume

    wanted = [("web", tmp_path / "t" / "web" / "token"), ("web", tmp_path / "t" / "w2" / "token")]
    created, report = bootstrap_volume(
        tmp_path / "ca", wanted, trust_domain="demo.local", namespace="shop"
    )
    assert created and len(report.created) == 2 and report.kept == []
    tokens = [p.read_text().strip() for _, p in wanted]
    assert tokens[0] != tokens[1] and all(mode(p) == 0o400 for _, p in wanted)
    store = TokenStore(tmp_path / "ca")
    assert store.verify(tokens[1], service="web", namespace="shop").service == "web"
    created, report = bootstrap_volume(
        tmp_path / "ca", wanted, trust_domain="demo.local", namespace="shop"
    )
    assert not created and report.created == [] and len(report.kept) == 2
    assert [p.read_text().strip() for _, p in wanted] == tokens
    with pytest.raises(UsageError, match=r"trust domain demo\.local"):
        bootstrap_volume(tmp_path / "ca", wanted, trust_domain="other.local", namespace="shop")


def test_certs_bootstrap_cli_errors(tmp_path: Path):
    from click.testing import CliRunner

    from gossamer.cli.main import cli

    runner = CliRunner()
    for args, message in (
        (["--token", "web"], "expected SERVICE=FILE"),
        (["--token", "web=x", "--owner", "me"], "expected UID or UID:GID"),
        (["--token", "Web_1=x"], "service"),
    ):
        result = runner.invoke(cli, ["certs", "bootstrap", "--dir", str(tmp_path / "ca"), *args])
        assert result.exit_code != 0
        assert message in str(result.exception) or message in result.output
