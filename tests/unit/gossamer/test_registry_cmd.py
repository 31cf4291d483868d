"""`gossamer registry`: validate, list (file and embedded store), compose; errors are
one line with file, field and line, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

from gossamer.contract.identity import ServiceKey
from gossamer.discovery.embedded import EmbeddedStore
from gossamer.discovery.model import Endpoint, Service
from tests.helpers.compose import SAMPLES
from tests.helpers.procs import run_gossamer

MESH = """\
services:
  - name: catalog
    ports: [{port: 8080, protocol: http}]
    endpoints:
      - {address: 127.0.0.1, port: 8080, zone: zone-a}
  - name: orders
    ports: [{port: 9090, protocol: grpc}]
"""


def test_validate_ok_and_error(tmp_path: Path):
    good = tmp_path / "mesh.yaml"
    good.write_text(MESH)
    result = run_gossamer("registry", "validate", str(good))
    assert result.returncode == 0 and "OK (2 services, 1 static endpoints)" in result.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(MESH.replace("protocol: grpc", "protocol: smtp"))
    result = run_gossamer("registry", "validate", str(bad))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    # the alias of `gossamer validate`: every error on stdout, one per line, no prefix
    assert result.stdout.splitlines() == [
        f"{bad}:7: services[1].ports[0].protocol: must be one of http, http2, grpc, tcp, got 'smtp'"
    ]


def test_list_from_the_file(tmp_path: Path):
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text(MESH)
    result = run_gossamer("registry", "list", "--config", str(mesh), "--output", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert [s["name"] for s in data["services"]] == ["catalog", "orders"]
    assert data["endpoints"][0]["instance_id"] == "static-127.0.0.1-8080"
    assert data["endpoints"][0]["sources"] == ["file"] and data["revision"] is None
    table = run_gossamer("registry", "list", "-c", str(mesh))
    assert "static-127.0.0.1-8080" in table.stdout and "9090/grpc" in table.stdout


async def test_list_reads_a_running_embedded_store(tmp_path: Path):
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text(MESH)
    store = EmbeddedStore(tmp_path / "data" / "registry.json")
    await store.start()  # holds the write lock while the CLI reads
    await store.put_service(Service("catalog"))
    await store.put_endpoint(Endpoint(ServiceKey("default", "catalog"), "extra", "10.1.1.1", 80))
    result = run_gossamer(
        "registry",
        "list",
        "-c",
        str(mesh),
        "--store",
        "embedded",
        "--data-dir",
        str(tmp_path / "data"),
        "-o",
        "json",
    )
    await store.close()
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    sources = {e["instance_id"]: e["sources"] for e in data["endpoints"]}
    assert sources == {"extra": ["store"], "static-127.0.0.1-8080": ["file"]}
    services = {s["name"]: s["sources"] for s in data["services"]}
    assert services == {"catalog": ["file", "store"], "orders": ["file"]}
    assert data["revision"] == 2


def test_list_needs_something_to_list_and_a_valid_store():
    result = run_gossamer("registry", "list")
    assert result.returncode == 2 and "nothing to list" in result.stderr
    result = run_gossamer("registry", "list", "--store", "zookeeper://x:1")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "unknown registry store" in result.stderr and "hint:" in result.stderr


def test_compose(tmp_path: Path):
    sample = str(SAMPLES / "nginx-nodejs-redis.yaml")
    result = run_gossamer("registry", "compose", sample, "-o", "json")
    assert result.returncode == 0, result.stderr
    data = {s["service"]: s for s in json.loads(result.stdout)}
    assert data["web1"]["ports"] == [{"port": 5000, "protocol": "http", "published": "81"}]
    broken = tmp_path / "compose.yaml"
    broken.write_text("services:\n  web:\n    ports: ['80:${NOPE}']\n")
    result = run_gossamer("registry", "compose", str(broken))
    assert result.returncode == 1 and f"{broken}:3: services.web.ports[0]" in result.stderr
