"""Parsing Compose `ports` and `expose` entries."""

from __future__ import annotations

import pytest

from gossamer.compose.ports import (
    PortEntry,
    guess_protocol,
    host_ports,
    parse_expose,
    parse_port,
    published_tcp_ports,
    service_ports,
    tcp_ports,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("80:80", PortEntry((80,), "tcp", True, (80,))),
        ("8080:80/udp", PortEntry((80,), "udp", True, (8080,))),
        (80, PortEntry((80,), "tcp", True, ())),
        ("3000", PortEntry((3000,), "tcp", True, ())),
        ("127.0.0.1:5000:5000", PortEntry((5000,), "tcp", True, (5000,), "127.0.0.1")),
        ("127.0.0.1::5000", PortEntry((5000,), "tcp", True, (), "127.0.0.1")),
        ("[::1]:6001:6000", PortEntry((6000,), "tcp", True, (6001,), "[::1]")),
        ("9090-9091:8080-8081", PortEntry((8080, 8081), "tcp", True, (9090, 9091))),
        (
            {"target": 80, "published": "8080", "protocol": "tcp", "host_ip": "0.0.0.0"},
            PortEntry((80,), "tcp", True, (8080,), "0.0.0.0"),
        ),
        ({"target": 53, "protocol": "udp"}, PortEntry((53,), "udp", True, ())),
    ],
)
def test_parse_port(value, expected):
    assert parse_port(value) == expected


@pytest.mark.parametrize(
    "value", ["${PORT}:80", "80:${PORT}", "abc", "0:80", "70000", True, None, {"published": 1}]
)
def test_unknowable_or_invalid_ports_are_skipped(value):
    assert parse_port(value) is None


def test_expose_entries():
    assert parse_expose(3306) == PortEntry((3306,))
    assert parse_expose("33060") == PortEntry((33060,))
    assert parse_expose("5000-5001/udp") == PortEntry((5000, 5001), "udp")
    assert parse_expose("${X}") is None


def test_service_ports_order_and_filters():
    service = {
        "ports": ["51820:51820/udp", "81:5000", {"target": 9229, "published": 9229}],
        "expose": [5000, "3306"],
    }
    entries = service_ports(service)
    assert tcp_ports(entries) == [5000, 9229, 3306]
    assert published_tcp_ports(entries) == [5000, 9229]
    assert host_ports(entries) == {51820, 81, 9229}


def test_protocol_guess():
    assert guess_protocol(8000) == "http"
    assert guess_protocol(5432) == "tcp"
    assert guess_protocol(6379) == "tcp"
