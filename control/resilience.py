"""Per-service resilience policy from mesh.yaml: outlier detection, circuit breakers,
active health checks. Parsed once, validated with field and line, frozen.

```yaml
outlier_detection:
  consecutive_5xx: 5                # eject after this many 5xx in a row (0: off)
  consecutive_gateway_errors: 3     # ... or this many 502/503/504 in a row (0: off)
  interval: 5s                      # how often ejections are evaluated
  base_ejection_time: 30s           # first ejection; each further one lasts longer
  max_ejection_time: 300s           # ... but never longer than this
  max_ejection_percent: 50          # never eject more than this share of endpoints
  success_rate: {minimum_hosts: 3, request_volume: 20, stdev_factor: 1.9}   # optional
  panic_threshold: 50               # below this % healthy, balance over all endpoints
circuit_breakers: {max_connections: 1024, max_pending_requests: 1024, max_requests: 1024, max_retries: 3}
health_check: {http_path: /healthz, interval: 5s, timeout: 1s, unhealthy_threshold: 3, healthy_threshold: 2}
                                    # or {tcp: true, ...}
```
"""

from __future__ import annotations

from dataclasses import dataclass

from gossamer.yamlconf import Node

OUTLIER_KEYS = (
    "consecutive_5xx",
    "consecutive_gateway_errors",
    "interval",
    "base_ejection_time",
    "max_ejection_time",
    "max_ejection_percent",
    "success_rate",
    "panic_threshold",
)
SUCCESS_RATE_KEYS = ("minimum_hosts", "request_volume", "stdev_factor")
BREAKER_KEYS = ("max_connections", "max_pending_requests", "max_requests", "max_retries")
HEALTH_KEYS = (
    "http_path",
    "tcp",
    "interval",
    "timeout",
    "unhealthy_threshold",
    "healthy_threshold",
)


@dataclass(frozen=True)
class SuccessRatePolicy:
    minimum_hosts: int = 5
    request_volume: int = 100
    stdev_factor: float = 1.9


@dataclass(frozen=True)
class OutlierPolicy:
    consecutive_5xx: int = 5
    consecutive_gateway_errors: int = 0
    interval: float = 5.0
    base_ejection_time: float = 30.0
    max_ejection_time: float = 300.0
    max_ejection_percent: int = 50
    success_rate: SuccessRatePolicy | None = None
    panic_threshold: float = 50.0


@dataclass(frozen=True)
class CircuitBreakerPolicy:
    max_connections: int | None = None
    max_pending_requests: int | None = None
    max_requests: int | None = None
    max_retries: int | None = None


@dataclass(frozen=True)
class HealthCheckPolicy:
    http_path: str | None = None  # None: a TCP connect check
    interval: float = 5.0
    timeout: float = 1.0
    unhealthy_threshold: int = 3
    healthy_threshold: int = 2


def _positive_duration(node: Node, default: float) -> float:
    if node.is_missing:
        return default
    value = node.duration()
    if value <= 0:
        raise node.error("must be longer than 0s")
    return value


def parse_outlier(node: Node) -> OutlierPolicy:
    node.check_keys(OUTLIER_KEYS)
    d = OutlierPolicy()
    success_rate = None
    if node.has("success_rate") and node.child("success_rate").value is not None:
        sr = node.child("success_rate")
        sr.check_keys(SUCCESS_RATE_KEYS)
        base = SuccessRatePolicy()
        success_rate = SuccessRatePolicy(
            minimum_hosts=sr.child("minimum_hosts", base.minimum_hosts).integer(minimum=1),
            request_volume=sr.child("request_volume", base.request_volume).integer(minimum=1),
            stdev_factor=sr.child("stdev_factor", base.stdev_factor).number(
                minimum=0.1, maximum=10.0
            ),
        )
    policy = OutlierPolicy(
        consecutive_5xx=node.child("consecutive_5xx", d.consecutive_5xx).integer(minimum=0),
        consecutive_gateway_errors=node.child(
            "consecutive_gateway_errors", d.consecutive_gateway_errors
        ).integer(minimum=0),
        interval=_positive_duration(node.child("interval", None), d.interval)
        if node.has("interval")
        else d.interval,
        base_ejection_time=_positive_duration(
            node.child("base_ejection_time"), d.base_ejection_time
        )
        if node.has("base_ejection_time")
        else d.base_ejection_time,
        max_ejection_time=_positive_duration(node.child("max_ejection_time"), d.max_ejection_time)
        if node.has("max_ejection_time")
        else d.max_ejection_time,
        max_ejection_percent=node.child("max_ejection_percent", d.max_ejection_percent).integer(
            minimum=0, maximum=100
        ),
        success_rate=success_rate,
        panic_threshold=node.child("panic_threshold", d.panic_threshold).number(
            minimum=0.0, maximum=100.0
        ),
    )
    if not (policy.consecutive_5xx or policy.consecutive_gateway_errors or policy.success_rate):
        raise node.error(
            "no ejection rule is on",
            hint="set consecutive_5xx, consecutive_gateway_errors or success_rate",
        )
    return policy


def parse_circuit_breakers(node: Node) -> CircuitBreakerPolicy:
    node.check_keys(BREAKER_KEYS)
    values = {
        key: node.child(key).integer(minimum=1, maximum=1_000_000) if node.has(key) else None
        for key in BREAKER_KEYS
    }
    return CircuitBreakerPolicy(**values)


def parse_health_check(node: Node) -> HealthCheckPolicy:
    node.check_keys(HEALTH_KEYS)
    d = HealthCheckPolicy()
    tcp = node.child("tcp", False).boolean()
    path = node.child("http_path").string() if node.has("http_path") else None
    if tcp == (path is not None):
        raise node.error("give exactly one of http_path or tcp: true")
    if path is not None and not path.startswith("/"):
        raise node.child("http_path").error("must start with /")
    policy = HealthCheckPolicy(
        http_path=path,
        interval=_positive_duration(node.child("interval"), d.interval)
        if node.has("interval")
        else d.interval,
        timeout=_positive_duration(node.child("timeout"), d.timeout)
        if node.has("timeout")
        else d.timeout,
        unhealthy_threshold=node.child("unhealthy_threshold", d.unhealthy_threshold).integer(
            minimum=1, maximum=100
        ),
        healthy_threshold=node.child("healthy_threshold", d.healthy_threshold).integer(
            minimum=1, maximum=100
        ),
    )
    if policy.timeout > policy.interval:
        raise node.error("timeout must not be longer than interval")
    return policy
