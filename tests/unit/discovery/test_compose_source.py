"""Compose files: services and the container ports they expose, with mesh protocols."""

from __future__ import annotations

from pathlib import Path

import pytest

from gossamer.discovery.compose_source import (
    ExposedPort,
    interpolate,
    load_compose,
    mesh_service_name,
    parse_compose_text,
)
from gossamer.discovery.model import ServicePort
from gossamer.errors import ConfigError
from tests.helpers.compose import SAMPLES


def ports_of(path: Path) -> dict[str, list[tuple[int, str | None]]]:
    return {s.name: [(p.port, p.published) for p in s.ports] for s in load_compose(path).services}


def test_every_sample_parses():
    files = sorted(SAMPLES.glob("*.y*ml"))
    assert len(files) >= 20
    for path in files:
        parsed = load_compose(path)
        assert parsed.services, path
        assert parsed.source == str(path)


def test_ports_and_expose_from_samples():
    assert ports_of(SAMPLES / "nginx-nodejs-redis.yaml") == {
        "redis": [(6379, "6379")],
        "web1": [(5000, "81")],
        "web2": [(5000, "82")],
        "nginx": [(80, "80")],
    }
    mysql = ports_of(SAMPLES / "nginx-flask-mysql.yaml")
    assert mysql["db"] == [(3306, None), (33060, None)]  # from expose:
    assert mysql["backend"] == [(8000, "8000")]
    assert ports_of(SAMPLES / "postgresql-pgadmin.yaml")["pgadmin"] == [(80, "5050")]
    assert ports_of(SAMPLES / "nextcloud-postgres.yaml")["db"] == [(5432, None)]


def test_udp_ports_are_not_meshed():
    wireguard = load_compose(SAMPLES / "wireguard.yaml").services[0]
    assert wireguard.ports == () and wireguard.other_ports == ("51820/udp",)


def test_every_port_defaults_to_http():
    for s in load_compose(SAMPLES / "react-express-mysql.yaml").services:
        assert all(p.protocol == "http" for p in s.ports)


COMPOSE = """\
services:
  api:
    image: api
    ports:
      - "127.0.0.1:8000-8001:9000-9001"
      - "[::1]:6001:6001"
      - 7000
      - target: 50051
        published: "${GRPC_PORT:-15051}"
        host_ip: 0.0.0.0
        protocol: tcp
        app_protocol: grpc
      - "${HOST_PORT}:8080"
      - "53:53/udp"
    expose: ["9000", 9100, "9200-9201/tcp"]
    x-gossamer:
      protocol: http2
      port: 7000
      ports: {7000: tcp}
  worker:
"""


def test_short_long_expose_ranges_and_protocols():
    parsed = parse_compose_text(COMPOSE, source="compose.yaml", environ={})
    api = parsed.service("api")
    assert api is not None
    assert [(p.port, p.protocol, p.published) for p in api.ports] == [
        (9000, "http2", "127.0.0.1:8000-8001"),
        (9001, "http2", "127.0.0.1:8000-8001"),
        (6001, "http2", "[::1]:6001"),
        (7000, "tcp", None),
        (50051, "grpc", "0.0.0.0:15051"),
        (8080, "http2", "${HOST_PORT}"),  # the host side may stay unresolved
        (9100, "http2", None),
        (9200, "http2", None),
        (9201, "http2", None),
    ]
    assert api.other_ports == ("53/udp",)
    assert api.ports[0] == ExposedPort(9000, "http2", "127.0.0.1:8000-8001", line=5)
    assert api.service_ports()[3] == ServicePort(7000, "tcp")
    assert api.meshed and api.app_port == 7000
    worker = parsed.service("worker")
    assert worker is not None and worker.ports == () and worker.meshed


def test_services_left_out_of_the_mesh():
    text = "services:\n  db:\n    expose: [5432]\n    x-gossamer: {mesh: false}\n"
    [db] = parse_compose_text(text).services
    assert not db.meshed and [p.port for p in db.ports] == [5432]


def test_environment_fills_variables():
    text = "services:\n  a:\n    ports: ['${P}:${Q:-80}']\n"
    [svc] = parse_compose_text(text, environ={"P": "8080"}).services
    assert [(p.port, p.published) for p in svc.ports] == [(80, "8080")]


def test_interpolation_rules():
    env = {"A": "1", "E": ""}
    assert interpolate("${A}-$A-${B:-2}-${E:-3}-${E-4}-$$", env) == "1-1-2-3--$"
    with pytest.raises(KeyError):
        interpolate("${MISSING}", env)
    assert interpolate("${MISSING}:80", env, strict=False) == "${MISSING}:80"


@pytest.mark.parametrize(
    ("text", "where", "words"),
    [
        ("services: [\n", "compose.yaml:", "not valid YAML"),
        ("- a\n- b\n", "compose.yaml:1", "not a compose file"),
        ("version: '3'\n", "compose.yaml:1", "not a compose file"),
        ("services: [a, b]\n", "compose.yaml:1: services", "not a compose file"),
        ("services:\n  a: 3\n", "compose.yaml:2: services.a", "expected a mapping"),
        ("services:\n  a:\n    ports: 80\n", "compose.yaml:3: services.a.ports", "expected a list"),
        (
            "services:\n  a:\n    ports: ['80:${P}']\n",
            "compose.yaml:3: services.a.ports[0]",
            "${P}, which is not set",
        ),
        (
            "services:\n  a:\n    ports: ['80:99999']\n",
            "compose.yaml:3: services.a.ports[0]",
            "outside 1-65535",
        ),
        (
            "services:\n  a:\n    ports: ['80:web']\n",
            "compose.yaml:3: services.a.ports[0]",
            "not a port",
        ),
        (
            "services:\n  a:\n    ports: ['1-5000']\n",
            "compose.yaml:3: services.a.ports[0]",
            "longer than",
        ),
        (
            "services:\n  a:\n    ports: ['80/quic']\n",
            "compose.yaml:3: services.a.ports[0]",
            "unknown transport",
        ),
        (
            "services:\n  a:\n    ports: [{published: 80}]\n",
            "compose.yaml:3: services.a.ports[0]",
            "'target'",
        ),
        (
            "services:\n  a:\n    x-gossamer: {protocl: grpc}\n",
            "compose.yaml:3: services.a.x-gossamer.protocl",
            "unknown field",
        ),
        (
            "services:\n  a:\n    x-gossamer: {protocol: udp}\n",
            "compose.yaml:3: services.a.x-gossamer.protocol",
            "one of http",
        ),
        (
            "services:\n  a:\n    x-gossamer: {ports: {web: grpc}}\n",
            "compose.yaml:3: services.a.x-gossamer.ports.web",
            "not a port number",
        ),
        (
            "services:\n  a:\n    x-gossamer: {mesh: 'no'}\n",
            "compose.yaml:3: services.a.x-gossamer.mesh",
            "true or false",
        ),
        (
            "services:\n  a:\n    x-gossamer: {port: 0}\n",
            "compose.yaml:3: services.a.x-gossamer.port",
            "between 1 and 65535",
        ),
    ],
)
def test_errors_have_lines(text: str, where: str, words: str):
    with pytest.raises(ConfigError) as info:
        parse_compose_text(text, source="compose.yaml")
    message = info.value.message
    assert message.startswith(where), message
    assert words in message, message


def test_mesh_names():
    assert mesh_service_name("Web_App.1") == "web-app-1"
    assert mesh_service_name("nginx-proxy") == "nginx-proxy"
