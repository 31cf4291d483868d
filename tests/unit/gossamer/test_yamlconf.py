from __future__ import annotations

import pytest

from gossamer.errors import ConfigError
from gossamer.yamlconf import format_duration, load_document, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5s", 5.0), ("250ms", 0.25), ("1h30m", 5400.0), ("24h", 86400.0), (3, 3.0), ("1.5", 1.5)],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5x", "s", "-1", "5s garbage", True])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_format_duration_round_trips():
    for s in (0.25, 1, 90, 3600, 86400, 5400):
        assert parse_duration(format_duration(s)) == pytest.approx(s)


DOC = """\
services:
  - name: catalog
    ports:
      - {port: 8080, protocol: http}
      - port: 70000
"""


def test_errors_name_field_and_line():
    root = load_document(DOC, source="mesh.yaml")
    services = list(root.child("services").items())
    ports = list(services[0].child("ports").items())
    assert ports[0].child("port").integer(minimum=1, maximum=65535) == 8080
    with pytest.raises(ConfigError) as info:
        ports[1].child("port").integer(minimum=1, maximum=65535)
    err = info.value
    assert err.line == 5
    assert err.field == "services[0].ports[1].port"
    assert str(err).startswith("mesh.yaml:5: services[0].ports[1].port: must be between")


def test_missing_and_unknown_fields():
    root = load_document("a: 1\nb: 2\n", source="x.yaml")
    with pytest.raises(ConfigError, match="missing required field 'c'"):
        root.child("c")
    with pytest.raises(ConfigError) as info:
        root.check_keys(["a"])
    assert info.value.line == 2 and info.value.field == "b"


def test_syntax_error_has_line():
    with pytest.raises(ConfigError) as info:
        load_document("a: 1\nb: [1, 2\nc: 3\n", source="bad.yaml")
    assert info.value.line is not None and info.value.line >= 2
    assert "not valid YAML" in str(info.value)


def test_type_errors_are_clear():
    root = load_document("port: '80'\nflag: yes\n")
    with pytest.raises(ConfigError, match="expected an integer, got string '80'"):
        root.child("port").integer()
    assert root.child("flag").string() == "yes"  # YAML 1.2: 'yes' is a string
