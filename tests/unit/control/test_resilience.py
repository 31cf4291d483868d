"""Resilience policy in mesh.yaml: parsing with field/line errors, and the Envoy fields."""

from __future__ import annotations

import pytest

from gossamer.contract.identity import ServiceKey
from gossamer.control.config import load_mesh_text
from gossamer.control.translate.clusters import outbound_cluster
from gossamer.discovery.model import Service, ServicePort
from gossamer.errors import ConfigError

BASE = "trust_domain: gossamer.local\nservices:\n  - name: catalog\n    ports: [{port: 8080}]\n"


def policy(extra: str):
    _root, mesh = load_mesh_text(BASE + extra, source="mesh.yaml")
    return mesh.policy_for(ServiceKey("default", "catalog"))


def cluster_for(extra: str):
    return outbound_cluster(
        Service("catalog", ports=(ServicePort(8080),)),
        ServicePort(8080),
        policy(extra),
        "gossamer.local",
        mtls=False,
    )


def test_defaults_without_sections():
    c = cluster_for("")
    assert c.outlier_detection.consecutive_5xx.value == 5
    assert c.outlier_detection.base_ejection_time.seconds == 30
    assert c.outlier_detection.max_ejection_time.seconds == 300
    assert c.outlier_detection.enforcing_success_rate.value == 0
    assert c.common_lb_config.healthy_panic_threshold.value == 50
    assert not c.HasField("circuit_breakers") and not c.health_checks


def test_full_sections_translate():
    c = cluster_for(
        "    outlier_detection:\n"
        "      consecutive_5xx: 0\n"
        "      consecutive_gateway_errors: 3\n"
        "      interval: 1s\n"
        "      base_ejection_time: 2s\n"
        "      max_ejection_time: 20s\n"
        "      max_ejection_percent: 34\n"
        "      success_rate: {minimum_hosts: 3, request_volume: 20, stdev_factor: 1.5}\n"
        "      panic_threshold: 30\n"
        "    circuit_breakers: {max_connections: 10, max_pending_requests: 5, max_requests: 20, max_retries: 2}\n"
        "    retries: {attempts: 2, budget_percent: 25}\n"
        "    health_check: {http_path: /healthz, interval: 2s, timeout: 500ms, unhealthy_threshold: 2}\n"
    )
    od = c.outlier_detection
    assert od.enforcing_consecutive_5xx.value == 0 and od.consecutive_gateway_failure.value == 3
    assert od.enforcing_consecutive_gateway_failure.value == 100
    assert od.success_rate_stdev_factor.value == 1500 and od.success_rate_minimum_hosts.value == 3
    assert od.max_ejection_percent.value == 34 and od.interval.seconds == 1
    assert od.max_ejection_time.seconds == 20
    assert c.common_lb_config.healthy_panic_threshold.value == 30
    [t] = c.circuit_breakers.thresholds
    assert (
        t.max_connections.value,
        t.max_pending_requests.value,
        t.max_requests.value,
        t.max_retries.value,
    ) == (10, 5, 20, 2)
    assert t.retry_budget.budget_percent.value == 25
    [hc] = c.health_checks
    assert hc.http_health_check.path == "/healthz" and hc.timeout.nanos == 500_000_000
    assert hc.unhealthy_threshold.value == 2 and hc.healthy_threshold.value == 2


def test_tcp_health_check():
    [hc] = cluster_for("    health_check: {tcp: true}\n").health_checks
    assert hc.HasField("tcp_health_check")


@pytest.mark.parametrize(
    ("extra", "field", "words"),
    [
        (
            "    outlier_detection: {consecutive_5xx: 0}\n",
            "services[0].outlier_detection",
            "no ejection rule",
        ),
        (
            "    outlier_detection: {max_ejection_percent: 101}\n",
            "services[0].outlier_detection.max_ejection_percent",
            "between 0 and 100",
        ),
        (
            "    outlier_detection: {interval: 0s}\n",
            "services[0].outlier_detection.interval",
            "longer than 0s",
        ),
        (
            "    outlier_detection: {ejection: 1}\n",
            "services[0].outlier_detection.ejection",
            "unknown field",
        ),
        (
            "    circuit_breakers: {max_requests: 0}\n",
            "services[0].circuit_breakers.max_requests",
            "between 1",
        ),
        ("    health_check: {interval: 1s}\n", "services[0].health_check", "exactly one of"),
        (
            "    health_check: {http_path: healthz}\n",
            "services[0].health_check.http_path",
            "start with /",
        ),
        (
            "    health_check: {tcp: true, interval: 1s, timeout: 2s}\n",
            "services[0].health_check",
            "not be longer",
        ),
    ],
)
def test_errors_name_field_and_line(extra, field, words):
    with pytest.raises(ConfigError) as info:
        policy(extra)
    assert info.value.field == field, str(info.value)
    assert words in str(info.value)
    assert info.value.line == 5
