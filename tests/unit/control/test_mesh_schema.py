"""The parsers and the schema agree: a file setting every schema field loads, each field
misspelt is refused, dataclass defaults are the schema's, and every independent error of
a file is reported with its line."""

from __future__ import annotations

import copy
import io
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from gossamer.contract.identity import ServiceKey
from gossamer.control.config import ControlConfig, load_mesh, load_mesh_text
from gossamer.control.policy import RetryPolicy, ServicePolicy
from gossamer.control.resilience import HealthCheckPolicy, OutlierPolicy, SuccessRatePolicy
from gossamer.errors import ConfigError, ConfigErrors
from gossamer.meshconfig import schema
from gossamer.meshconfig.fields import Section
from gossamer.observe.settings import ObservabilitySettings
from gossamer.yamlconf import parse_duration

MAXIMAL = """\
trust_domain: example.org
control:
  xds_listen: 0.0.0.0:15012
  bootstrap_listen: 0.0.0.0:15011
  insecure_xds_listen: 127.0.0.1:15010
  api_listen: 127.0.0.1:15014
  ca_dir: ca
  data_dir: data
  store: etcd://10.0.0.1:2379
  lease_ttl: 20s
  max_token_ttl: 2h
  max_cert_ttl: 12h
services:
  - name: catalog
    namespace: shop
    ports: [{port: 8080, protocol: http2, name: web}]
    endpoints:
      - {address: 10.0.0.5, port: 8080, zone: a, node: n1, weight: 3, labels: {tier: gold},
         instance_id: c-1, service_ports: [8080]}
    lb_policy: ring_hash
    hash_header: x-user
    timeout: 5s
    stream_idle_timeout: 2m
    request_timeout: 30s
    retries: {attempts: 2, per_try_timeout: 1s, on: [reset, 503], budget_percent: 20}
    authorization: {allow: ['spiffe://example.org/ns/shop/sa/*']}
    outlier_detection:
      consecutive_5xx: 4
      consecutive_gateway_errors: 2
      interval: 2s
      base_ejection_time: 10s
      max_ejection_time: 60s
      max_ejection_percent: 30
      success_rate: {minimum_hosts: 3, request_volume: 20, stdev_factor: 1.5}
      panic_threshold: 40
    circuit_breakers: {max_connections: 10, max_pending_requests: 11, max_requests: 12, max_retries: 2}
    health_check: {http_path: /healthz, interval: 2s, timeout: 1s, unhealthy_threshold: 2, healthy_threshold: 1}
  - name: cache
    ports: [6379]
    health_check: {tcp: true}
observability:
  prometheus_url: http://prometheus:9090
  jaeger_url: http://localhost:16686
  certificate_warning: 12h
  window: 30s
  http_sd: open
  prometheus_token_file: prometheus.token
  history: 2h
  history_step: 5s
"""


def _load(text: str) -> Any:
    return YAML(typ="safe").load(text)


def _paths(value: Any, prefix: str = "") -> set[str]:
    """The schema-style paths (`services[].retries.attempts`) a loaded document sets."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, child in value.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            found.add(path)
            if key != "labels":  # free-form mapping
                found |= _paths(child, path)
    elif isinstance(value, list):
        for item in value:
            found |= _paths(item, prefix + "[]")
    return found


def test_the_maximal_file_sets_every_schema_field_and_loads():
    assert _paths(_load(MAXIMAL)) == set(schema.MESH.field_paths())
    _root, mesh = load_mesh_text(MAXIMAL, source="mesh.yaml")
    policy = mesh.policy_for(ServiceKey("shop", "catalog"))
    assert policy.circuit_breakers is not None and policy.circuit_breakers.max_requests == 12
    assert policy.outlier is not None and policy.outlier.success_rate is not None
    assert mesh.observability.window == 30.0 and mesh.control.lease_ttl == 20.0
    assert (policy.stream_idle_timeout, policy.request_timeout) == (120.0, 30.0)
    assert mesh.observability.http_sd_open
    assert (mesh.observability.history, mesh.observability.history_step) == (7200.0, 5.0)
    assert mesh.observability.prometheus_token_file == Path.cwd() / "prometheus.token"


def test_http_sd_defaults_to_token_and_refuses_other_modes(tmp_path):
    _root, mesh = load_mesh_text("trust_domain: a.local\n", source="mesh.yaml")
    assert not mesh.observability.http_sd_open
    assert mesh.observability.prometheus_token_file is None
    with pytest.raises(ConfigError) as info:
        load_mesh_text("observability: {http_sd: anyone}\n", source="mesh.yaml")
    assert "must be one of token, open" in str(info.value)
    (tmp_path / "mesh.yaml").write_text("observability: {prometheus_token_file: p.token}\n")
    _root, mesh = load_mesh(tmp_path / "mesh.yaml")
    assert mesh.observability.prometheus_token_file == tmp_path / "p.token"


def _misspellings() -> list[str]:
    return sorted(p for p in schema.MESH.field_paths())


def _rename(doc: Any, parts: list[str]) -> str | None:
    """Rename the first key at `parts` (list levels end in []); its concrete path."""
    head, rest = parts[0], parts[1:]
    is_list = head.endswith("[]")
    key = head[:-2] if is_list else head
    if not isinstance(doc, dict) or key not in doc:
        return None
    if not rest:
        doc[key + "x"] = doc.pop(key)
        return key + "x"
    children = list(enumerate(doc[key])) if is_list else [(None, doc[key])]
    for index, child in children:
        found = _rename(child, rest)
        if found is not None:
            return f"{key}[{index}].{found}" if is_list else f"{key}.{found}"
    return None


@pytest.mark.parametrize("path", _misspellings())
def test_each_schema_field_misspelt_is_refused(path: str):
    doc = copy.deepcopy(_load(MAXIMAL))
    concrete = _rename(doc, path.split("."))
    assert concrete is not None, path
    out = io.StringIO()
    YAML(typ="safe").dump(doc, out)
    with pytest.raises(ConfigError) as info:
        load_mesh_text(out.getvalue(), source="mesh.yaml")
    errors = info.value.errors if isinstance(info.value, ConfigErrors) else (info.value,)
    assert any(e.field == concrete and e.detail == "unknown field" for e in errors), [
        e.message for e in errors
    ]


def _expected(section: Section, name: str) -> Any:
    f = section[name]
    return parse_duration(f.default) if f.type == "duration" else f.default


@pytest.mark.parametrize(
    ("section", "cls"),
    [
        (schema.OUTLIER, OutlierPolicy),
        (schema.SUCCESS_RATE, SuccessRatePolicy),
        (schema.HEALTH, HealthCheckPolicy),
        (schema.OBSERVABILITY, ObservabilitySettings),
        (schema.CONTROL, ControlConfig),
        (schema.SERVICE, ServicePolicy),
    ],
)
def test_dataclass_defaults_are_the_schemas(section: Section, cls: type):
    instance = cls()
    checked = 0
    for f in fields(cls):
        if f.name not in section or section[f.name].default is None:
            continue
        value = getattr(instance, f.name)
        expected = _expected(section, f.name)
        assert (value if isinstance(value, int | float) else str(value)) == expected, f.name
        checked += 1
    assert checked >= 1
    assert RetryPolicy(1).on == tuple(schema.RETRIES["on"].default)


THREE_APART = """\
trust_domain: Not Valid
services:
  - name: a
    ports: [{port: 70000}]
    timeout: soon
    endpoints:
      - {address: 10.0.0.1, port: 80, weight: 0}
observability: {window: 1s}
"""


def test_independent_errors_are_all_reported_in_line_order():
    with pytest.raises(ConfigErrors) as info:
        load_mesh_text(THREE_APART, source="mesh.yaml")
    lines = [re.sub(r":\s.*", "", e.message.split(": ", 1)[1]) for e in info.value.errors]
    assert [e.line for e in info.value.errors] == [1, 4, 5, 7, 8], str(info.value)
    assert lines == [
        "trust_domain",
        "services[0].ports[0].port",
        "services[0].timeout",
        "services[0].endpoints[0].weight",
        "observability.window",
    ]
