"""compose.yaml, the demo mesh for Docker users: exactly `gossamer inject` of the plain
demo file, valid for the Compose schema, the real Compose binary and the semantic
checks, with its bootstrap done at `docker compose up` by a one-shot container whose
command is run here for real (no secret is in the repository)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gossamer.certs.ca import CertificateAuthority
from gossamer.certs.tokens import TokenStore
from gossamer.compose.inject import inject_text, uninject_text
from gossamer.compose.plan import InjectOptions
from gossamer.compose.validate import compose_problems, schema_problems, semantic_problems
from gossamer.control.config import load_mesh_text
from tests.helpers.compose import plain
from tests.helpers.procs import gossamer_cmd

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "compose.yaml"
PLAIN = REPO / "gossamer" / "demo" / "compose.plain.yaml"
OPTIONS = InjectOptions(observability=True, bootstrap="volumes")
APPS = ("web", "catalog", "catalog-2", "inventory", "loadgen")


@pytest.fixture(scope="module")
def data() -> dict[str, Any]:
    return plain(COMPOSE.read_text())


def test_compose_yaml_is_the_injection_of_the_plain_demo_file():
    text = COMPOSE.read_text()
    original = PLAIN.read_text()
    fresh = inject_text(original, OPTIONS, source=COMPOSE.name)
    assert fresh.text == text, (
        "compose.yaml is stale: gossamer inject gossamer/demo/compose.plain.yaml "
        "-o compose.yaml --with-observability --bootstrap volumes --force"
    )
    again = inject_text(text, OPTIONS, source=COMPOSE.name)
    assert not again.changed and again.text == text
    assert uninject_text(text, source=COMPOSE.name) == original


def test_compose_yaml_passes_schema_compose_and_semantic_checks(tmp_path: Path):
    text = COMPOSE.read_text()
    assert schema_problems(text) == []
    # alone in an empty folder: it needs no file beside it (no .gossamer/, no secrets)
    alone = tmp_path / "compose.yaml"
    shutil.copyfile(COMPOSE, alone)
    assert compose_problems(alone) == []
    assert semantic_problems(PLAIN.read_text(), text) == []


def test_demo_shape(data: dict[str, Any]):
    services = data["services"]
    for name in APPS:
        app = services[name]
        assert app["image"] == "gossamer:latest"
        assert app["network_mode"] == f"service:{name}-netns"
        assert app["depends_on"][f"{name}-proxy"] == {"condition": "service_healthy"}
        proxy = services[f"{name}-proxy"]
        args = proxy["command"]
        assert args[args.index("--service") + 1] == ("catalog" if name == "catalog-2" else name)
        assert proxy["volumes"] == [
            f"gossamer-state-{name}:/run/gossamer/state",
            f"gossamer-token-{name}:/run/gossamer/token:ro",
        ]
        assert args[args.index("--state-dir") + 1] == "/run/gossamer/state"
        # the state volume: tmpfs of the sidecar's UID, held by the namespace owner so
        # that Docker keeps it mounted across the sidecar's restarts
        volume = data["volumes"][f"gossamer-state-{name}"]
        assert volume["driver_opts"] == {
            "type": "tmpfs",
            "device": "tmpfs",
            "o": "mode=0700,uid=1337,gid=1337",
        }
        netns = services[f"{name}-netns"]
        assert netns["volumes"] == [f"gossamer-state-{name}:/run/gossamer/state:ro"]
        assert proxy["user"] == "1337:1337"
        assert proxy["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4317"
        assert "NET_ADMIN" in services[f"{name}-init"]["cap_add"]
    # the two catalog replicas answer to one name, as Compose replicas do
    for replica in ("catalog-netns", "catalog-2-netns"):
        assert "catalog" in services[replica]["networks"]["default"]["aliases"]
    assert services["web-netns"]["ports"] == ["127.0.0.1:8080:8080"]
    assert services["jaeger"]["image"].startswith("jaegertracing/jaeger:2.")
    assert services["prometheus"]["image"].startswith("prom/prometheus:")
    # only the control plane and the bootstrap container see the CA
    holders = [
        n for n, s in services.items() if "gossamer-ca:/etc/gossamer/ca" in s.get("volumes", [])
    ]
    assert sorted(holders) == ["gossamer-bootstrap", "gossamer-control"]
    assert "secrets" not in data
    assert ".gossamer" not in COMPOSE.read_text().split("\nx-gossamer:")[0]


def test_bootstrap_container_command_makes_ca_and_tokens(data: dict[str, Any], tmp_path: Path):
    """Run the one-shot bootstrap's own command with its volumes mapped to folders."""
    service = data["services"]["gossamer-bootstrap"]
    mounts = {m.split(":")[1]: tmp_path / m.split(":")[0] for m in service["volumes"]}

    def host(path: str) -> str:
        for target, folder in mounts.items():
            if path == target or path.startswith(target + "/"):
                return str(folder / path[len(target) :].lstrip("/"))
        raise AssertionError(f"{path} is not on a volume")

    args = list(service["command"])
    args[args.index("--dir") + 1] = host(args[args.index("--dir") + 1])
    for i, arg in enumerate(args):
        if i and args[i - 1] == "--token":
            service_name, _, path = arg.partition("=")
            args[i] = f"{service_name}={host(path)}"
    first = subprocess.run(gossamer_cmd(*args), capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert "CA created" in first.stdout and "5 created, 0 kept" in first.stdout

    ca_dir = tmp_path / "gossamer-ca"
    ca = CertificateAuthority.load(ca_dir)
    assert ca.trust_domain == "gossamer.local"
    store = TokenStore(ca_dir)
    for name in APPS:
        token_file = tmp_path / f"gossamer-token-{name}" / "token"
        mesh_service = "catalog" if name == "catalog-2" else name
        token = token_file.read_text().strip()
        assert (
            store.verify(token, service=mesh_service, namespace="default").ca_pin == ca.root_pin()
        )
        info = token_file.stat()
        assert stat.S_IMODE(info.st_mode) == 0o400
        if os.geteuid() == 0:
            assert info.st_uid == 1337  # only the sidecar's user reads it
    # every `docker compose up` runs it again: what still works is kept
    again = subprocess.run(gossamer_cmd(*args), capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert "CA kept" in again.stdout and "0 created, 5 kept" in again.stdout


def test_inline_configs_are_valid_for_their_programs(data: dict[str, Any], tmp_path: Path):
    mesh_text = data["configs"]["gossamer-mesh"]["content"]
    _root, mesh = load_mesh_text(mesh_text)
    assert mesh.trust_domain == "gossamer.local"
    assert str(mesh.control.xds_listen) == "0.0.0.0:15012"
    assert mesh.observability.prometheus_url == "http://prometheus:9090"
    assert 'name: "catalog"' in mesh_text and mesh_text.count("name:") == 3
    prom = tmp_path / "prometheus.yml"
    prom.write_text(data["configs"]["gossamer-prometheus"]["content"])
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool comes with the prometheus Debian package"
    check = subprocess.run([promtool, "check", "config", str(prom)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
