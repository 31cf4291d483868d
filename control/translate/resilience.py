"""Resilience settings on outbound clusters: outlier detection, the panic threshold,
circuit breakers (with the retry budget, which Envoy keeps there) and active health
checks, from the service's policy in mesh.yaml.

Without an `outlier_detection` section a cluster gets the mesh default: eject after 5
consecutive 5xx, evaluated every 5 s, 30 s base ejection, at most 50% ejected.
"""

from __future__ import annotations

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2, outlier_detection_pb2
from envoy.config.core.v3 import base_pb2, health_check_pb2
from envoy.type.v3 import http_pb2, percent_pb2
from google.protobuf import wrappers_pb2

from gossamer.control.policy import ServicePolicy
from gossamer.control.resilience import OutlierPolicy

from .common import duration

DEFAULT_OUTLIER = OutlierPolicy()


def _u32(value: int) -> wrappers_pb2.UInt32Value:
    return wrappers_pb2.UInt32Value(value=value)


def outlier_detection(policy: OutlierPolicy) -> outlier_detection_pb2.OutlierDetection:
    od = outlier_detection_pb2.OutlierDetection(
        consecutive_5xx=_u32(policy.consecutive_5xx),
        interval=duration(policy.interval),
        base_ejection_time=duration(policy.base_ejection_time),
        max_ejection_time=duration(policy.max_ejection_time),
        max_ejection_percent=_u32(policy.max_ejection_percent),
        # Envoy enforces each rule at a percentage: 0 turns a rule off, 100 always
        enforcing_consecutive_5xx=_u32(100 if policy.consecutive_5xx else 0),
    )
    if policy.consecutive_gateway_errors:
        od.consecutive_gateway_failure.value = policy.consecutive_gateway_errors
        od.enforcing_consecutive_gateway_failure.value = 100
    else:
        od.enforcing_consecutive_gateway_failure.value = 0
    if policy.success_rate is not None:
        sr = policy.success_rate
        od.success_rate_minimum_hosts.value = sr.minimum_hosts
        od.success_rate_request_volume.value = sr.request_volume
        od.success_rate_stdev_factor.value = round(sr.stdev_factor * 1000)
        od.enforcing_success_rate.value = 100
    else:
        od.enforcing_success_rate.value = 0
    return od


def _thresholds(policy: ServicePolicy) -> circuit_breaker_pb2.CircuitBreakers.Thresholds | None:
    cb = policy.circuit_breakers
    budget = policy.retries.budget_percent if policy.retries is not None else None
    if cb is None and budget is None:
        return None
    t = circuit_breaker_pb2.CircuitBreakers.Thresholds(priority=base_pb2.DEFAULT)
    if cb is not None:
        for field, value in (
            ("max_connections", cb.max_connections),
            ("max_pending_requests", cb.max_pending_requests),
            ("max_requests", cb.max_requests),
            ("max_retries", cb.max_retries),
        ):
            if value is not None:
                getattr(t, field).value = value
    if budget is not None:
        t.retry_budget.CopyFrom(
            circuit_breaker_pb2.CircuitBreakers.Thresholds.RetryBudget(
                budget_percent=percent_pb2.Percent(value=budget),
                min_retry_concurrency=_u32(3),
            )
        )
    return t


def health_checks(policy: ServicePolicy, http2: bool = False) -> list[health_check_pb2.HealthCheck]:
    """The service's active health check; on an HTTP/2 or gRPC port (`http2`) an HTTP
    check speaks HTTP/2 (Envoy's codec_client_type HTTP2)."""
    hc = policy.health_check
    if hc is None:
        return []
    check = health_check_pb2.HealthCheck(
        timeout=duration(hc.timeout),
        interval=duration(hc.interval),
        unhealthy_threshold=_u32(hc.unhealthy_threshold),
        healthy_threshold=_u32(hc.healthy_threshold),
    )
    if hc.http_path is not None:
        check.http_health_check.path = hc.http_path
        if http2:
            check.http_health_check.codec_client_type = http_pb2.HTTP2
    else:
        check.tcp_health_check.SetInParent()
    return [check]


def apply_resilience(
    cluster: cluster_pb2.Cluster, policy: ServicePolicy, *, http2: bool = False
) -> None:
    outlier = policy.outlier or DEFAULT_OUTLIER
    cluster.outlier_detection.CopyFrom(outlier_detection(outlier))
    cluster.common_lb_config.healthy_panic_threshold.value = outlier.panic_threshold
    thresholds = _thresholds(policy)
    if thresholds is not None:
        cluster.circuit_breakers.CopyFrom(
            circuit_breaker_pb2.CircuitBreakers(thresholds=[thresholds])
        )
    cluster.health_checks.extend(health_checks(policy, http2))
