"""mesh.yaml's services section: typed results, and errors naming field and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from gossamer.contract.identity import ServiceKey
from gossamer.discovery.mesh_services import load_services, parse_services_text
from gossamer.discovery.model import Endpoint, Service, ServicePort
from gossamer.errors import ConfigError

GOOD = """\
# the control plane's file; other sections belong to other parts
control: {listen: 127.0.0.1:15010}
services:
  - name: catalog
    namespace: shop
    ports: [{port: 8080, protocol: http}, {port: 9090, protocol: grpc, name: rpc}]
    lb_policy: least_request
    timeout: 2s
    retries: {attempts: 3}
    authorization: {allow: [frontend]}
    health_check: {path: /healthz}
    outlier_detection: {consecutive_5xx: 5}
    circuit_breakers: {max_connections: 100}
    hash_header: x-user
    endpoints:
      - {address: 127.0.0.1, port: 8080, zone: zone-a, weight: 1}
      - address: db.internal
        port: 18080
        instance_id: catalog-2
        node: n2
        weight: 3
        labels: {version: v2, canary: 1}
        service_ports: [9090]
  - name: orders
    ports: [7000]
"""


def test_parses_services_and_static_endpoints():
    mesh = parse_services_text(GOOD, source="mesh.yaml")
    catalog = Service(
        "catalog", "shop", (ServicePort(8080, "http"), ServicePort(9090, "grpc", "rpc"))
    )
    assert mesh.services == (catalog, Service("orders", ports=(ServicePort(7000, "http"),)))
    first, second = mesh.endpoints
    assert first == Endpoint(
        catalog.key, "static-127.0.0.1-8080", "127.0.0.1", 8080, zone="zone-a", weight=1
    )
    assert second.instance_id == "catalog-2" and second.address == "db.internal"
    assert second.labels == (("canary", "1"), ("version", "v2"))
    assert second.service_ports == (9090,) and second.weight == 3 and second.node == "n2"
    assert all(e.owner == "static" and not e.mtls for e in mesh.endpoints)
    # the control plane gets each entry's node to read its own keys, with lines
    node = mesh.nodes[catalog.key]
    assert node.child("lb_policy").value == "least_request" and node.child("timeout").line == 8
    assert mesh.service(ServiceKey("default", "orders")) is not None


def test_no_services_section_is_empty():
    mesh = parse_services_text("control: {}\n")
    assert mesh.services == () and mesh.endpoints == ()


@pytest.mark.parametrize(
    ("snippet", "where", "words"),
    [
        ("  - name: Catalog\n", "mesh.yaml:2: services[0].name", "DNS-1123"),
        (
            "  - name: a\n    namespace: under_score\n",
            "mesh.yaml:3: services[0].namespace",
            "DNS-1123",
        ),
        (
            "  - name: a\n    ports: [{port: 70000}]\n",
            "mesh.yaml:3: services[0].ports[0].port",
            "between 1 and 65535",
        ),
        (
            "  - name: a\n    ports: [{port: 80, protocol: udp}]\n",
            "mesh.yaml:3: services[0].ports[0].protocol",
            "http, http2, grpc, tcp",
        ),
        ("  - name: a\n    ports: [80, 80]\n", "mesh.yaml:3: services[0].ports", "listed twice"),
        ("  - name: a\n    colour: blue\n", "mesh.yaml:3: services[0].colour", "unknown field"),
        (
            "  - name: a\n  - name: a\n",
            "mesh.yaml:3: services[1].name",
            "defined twice (first at line 2)",
        ),
        ("  - ports: [80]\n", "mesh.yaml:2: services[0]", "missing required field 'name'"),
        (
            "  - name: a\n    endpoints:\n      - {address: 10.0.0.1, port: 80}\n      - {address: 10.0.0.1, port: 80}\n",
            "mesh.yaml:5: services[0].endpoints[1]",
            "used twice",
        ),
        (
            "  - name: a\n    endpoints:\n      - {address: 'not valid!', port: 80}\n",
            "mesh.yaml:4: services[0].endpoints[0].address",
            "not an IP address or host name",
        ),
        (
            "  - name: a\n    endpoints:\n      - {address: 10.0.0.1, port: 80, weight: 0}\n",
            "mesh.yaml:4: services[0].endpoints[0].weight",
            "between 1 and 128",
        ),
        (
            "  - name: a\n    endpoints:\n      - {address: 10.0.0.1}\n",
            "mesh.yaml:4: services[0].endpoints[0]",
            "missing required field 'port'",
        ),
        (
            "  - name: a\n    ports: [80]\n    endpoints:\n      - {address: 10.0.0.1, port: 80, service_ports: [81]}\n",
            "mesh.yaml:5: services[0].endpoints[0].service_ports[0]",
            "has no port 81",
        ),
        (
            "  - name: a\n    endpoints:\n      - {address: 10.0.0.1, port: 80, labels: {a: [1]}}\n",
            "mesh.yaml:4: services[0].endpoints[0].labels.a",
            "strings or numbers",
        ),
        (
            "  - name: a\n    endpoints:\n      - {address: 10.0.0.1, port: 80, zone: 3}\n",
            "mesh.yaml:4: services[0].endpoints[0].zone",
            "expected a string",
        ),
        (
            "  - name: a\n    endpoints:\n      - {address: 10.0.0.1, port: 80, instance_id: ''}\n",
            "mesh.yaml:4: services[0].endpoints[0].instance_id",
            "1-253 characters",
        ),
        ("  name: a\n", "mesh.yaml:1: services", "expected a list"),
        ("  - name: a\n   bad: indent\n", "mesh.yaml:3", "not valid YAML"),
    ],
)
def test_errors_name_field_and_line(snippet: str, where: str, words: str):
    with pytest.raises(ConfigError) as info:
        parse_services_text("services:\n" + snippet, source="mesh.yaml")
    message = info.value.message
    assert message.startswith(where + ":"), message
    assert words in message, message


def test_load_from_a_file(tmp_path: Path):
    path = tmp_path / "mesh.yaml"
    path.write_text(GOOD)
    assert len(load_services(path).services) == 2
    with pytest.raises(ConfigError) as info:
        load_services(tmp_path / "missing.yaml")
    assert "file not found" in info.value.message
