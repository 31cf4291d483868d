from __future__ import annotations

import pytest

from gossamer.control.static_services import registry_from_document
from gossamer.discovery.model import Health, ServiceKey
from gossamer.errors import ConfigError
from gossamer.yamlconf import load_document

DOC = """\
services:
  - name: echo
    ports: [{port: 50051, protocol: grpc}, {port: 9090, protocol: http, name: metrics}]
    endpoints:
      - {address: 127.0.0.1, port: 7001, zone: a, weight: 3}
      - {address: 10.0.0.2, port: 7002, health: draining, instance_id: e2, mtls: true,
         service_ports: [50051], labels: {version: v2}}
  - name: db
    namespace: data
    ports: [{port: 5432, protocol: tcp}]
"""


def test_services_and_endpoints():
    state = registry_from_document(load_document(DOC), revision=7)
    assert state.revision == 7
    echo = state.services[ServiceKey("default", "echo")]
    assert [(p.port, p.protocol, p.name) for p in echo.ports] == [
        (50051, "grpc", ""),
        (9090, "http", "metrics"),
    ]
    assert ServiceKey("data", "db") in state.services
    first, second = state.endpoints_of(echo.key)
    assert (first.instance_id, first.zone, first.weight) == ("127.0.0.1:7001", "a", 3)
    assert second.instance_id == "e2" and second.health is Health.DRAINING and second.mtls
    assert second.service_ports == (50051,) and second.label_map == {"version": "v2"}


@pytest.mark.parametrize(
    ("text", "field", "line"),
    [
        ("services:\n  - name: a\n    ports: [{port: 0}]\n", "services[0].ports[0].port", 3),
        (
            "services:\n  - name: a\n    ports: [{port: 1, protocol: udp}]\n",
            "services[0].ports[0].protocol",
            3,
        ),
        ("services:\n  - name: a\n    ports: [{port: 1}, {port: 1}]\n", "services[0].ports", 3),
        (
            "services:\n  - name: a\n    endpoints:\n      - {address: 'not an address', port: 1}\n",
            "services[0].endpoints[0].address",
            4,
        ),
        (
            "services:\n  - name: a\n    endpoints:\n      - {address: 1.2.3.4, port: 1, weight: 500}\n",
            "services[0].endpoints[0].weight",
            4,
        ),
        (
            "services:\n  - name: a\n    ports: [{port: 80}]\n    endpoints:\n"
            "      - {address: 1.2.3.4, port: 1, service_ports: [81]}\n",
            "services[0].endpoints[0].service_ports",
            5,
        ),
        (
            "services:\n  - name: a\n    endpoints:\n      - {address: 1.2.3.4, port: 1}\n"
            "      - {address: 1.2.3.4, port: 1}\n",
            "services[0].endpoints[1]",
            5,
        ),
    ],
)
def test_errors_name_field_and_line(text, field, line):
    with pytest.raises(ConfigError) as info:
        registry_from_document(load_document(text, source="mesh.yaml"))
    assert (info.value.field, info.value.line) == (field, line), str(info.value)
