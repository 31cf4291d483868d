"""The observability section of mesh.yaml."""

from __future__ import annotations

import pytest

from gossamer.errors import ConfigError
from gossamer.observe.settings import load_observability, parse_observability
from gossamer.yamlconf import load_document


def parse(text: str):
    return parse_observability(load_document(text, source="mesh.yaml").child("observability", None))


def test_defaults_and_values():
    assert parse("trust_domain: x\n").prometheus_url is None
    s = parse(
        "observability:\n"
        "  prometheus_url: http://prom:9090/\n"
        "  jaeger_url: http://localhost:16686\n"
        "  certificate_warning: 2h\n"
        "  window: 30s\n"
    )
    assert s.prometheus_url == "http://prom:9090" and s.jaeger_url == "http://localhost:16686"
    assert s.certificate_warning == 7200 and s.window == 30


@pytest.mark.parametrize(
    ("body", "field", "line"),
    [
        ("  prometheus_url: prom:9090\n", "observability.prometheus_url", 3),
        ("  jaeger: http://x\n", "observability.jaeger", 3),
        ("  window: 1s\n", "observability.window", 3),
        ("  certificate_warning: soon\n", "observability.certificate_warning", 3),
    ],
)
def test_errors_name_field_and_line(body, field, line):
    with pytest.raises(ConfigError) as err:
        parse("trust_domain: x\nobservability:\n" + body)
    assert err.value.field == field and err.value.line == line


def test_cli_targets_from_mesh_yaml(tmp_path):
    path = tmp_path / "mesh.yaml"
    path.write_text(
        "control:\n  api_listen: 0.0.0.0:15999\n  data_dir: ./data\n"
        "observability:\n  prometheus_url: http://p:9090\n"
    )
    t = load_observability(path)
    assert t.api_url == "http://127.0.0.1:15999"
    assert t.admin_token_file == (tmp_path / "data" / "admin-token").resolve()
    assert t.observability.prometheus_url == "http://p:9090"
    path.write_text("control:\n  api_listen: '[::1]:15014'\n")
    assert load_observability(path).api_url == "http://[::1]:15014"


def test_history_defaults_off_and_bounds():
    s = parse("trust_domain: x\n")
    assert (s.history, s.history_step) == (3600.0, 10.0)
    assert parse("observability: {history: 6h, history_step: 30s}\n").history == 6 * 3600
    assert parse("observability: {history: off}\n").history == 0
    assert parse("observability: {history: 0}\n").history == 0


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ("{history: 2d}", "observability.history", "at most 24h"),
        ("{history: 5s}", "observability.history", "at least history_step"),
        ("{history: 24h, history_step: 1s}", "observability.history", "8640"),
        ("{history: soon}", "observability.history", "duration"),
        ("{history_step: 0.5s}", "observability.history_step", "between 1s and 5m"),
        ("{history_step: 10m}", "observability.history_step", "between 1s and 5m"),
    ],
)
def test_history_errors(body, field, words):
    with pytest.raises(ConfigError) as err:
        parse(f"trust_domain: x\nobservability: {body}\n")
    assert err.value.field == field and words in err.value.message
