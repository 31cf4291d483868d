"""Per-service resilience policy from mesh.yaml: outlier detection, circuit breakers,
active health checks. Parsed once, validated with field and line, frozen.

The keys, defaults and bounds are declared in gossamer/meshconfig/schema.py (a unit test
checks that the dataclass defaults below agree with it); inside
`yamlconf.collecting()` every independent error is reported, not only the first.

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
from functools import partial

from gossamer.meshconfig import schema
from gossamer.meshconfig.fields import Field
from gossamer.yamlconf import Node, attempt, parse_duration


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


def _integer(node: Node, field: Field) -> int:
    return attempt(lambda: field.integer(node), int(field.default or 0))


def _number(node: Node, field: Field) -> float:
    return attempt(lambda: field.number(node), float(field.default or 0))


def positive_duration(node: Node) -> float:
    """A duration longer than 0s."""
    value = node.duration()
    if value <= 0:
        raise node.error("must be longer than 0s")
    return value


def _positive_duration(node: Node, field: Field) -> float:
    """A duration longer than 0s (its default when absent)."""
    default = parse_duration(field.default)

    def read() -> float:
        return positive_duration(node.child(field.name)) if node.has(field.name) else default

    return attempt(read, default)


def parse_outlier(node: Node) -> OutlierPolicy:
    fields = schema.OUTLIER
    node.check_keys(fields.keys)
    sr_node = fields["success_rate"].present(node)
    success_rate = attempt(lambda: _success_rate(sr_node), None) if sr_node else None
    policy = OutlierPolicy(
        consecutive_5xx=_integer(node, fields["consecutive_5xx"]),
        consecutive_gateway_errors=_integer(node, fields["consecutive_gateway_errors"]),
        interval=_positive_duration(node, fields["interval"]),
        base_ejection_time=_positive_duration(node, fields["base_ejection_time"]),
        max_ejection_time=_positive_duration(node, fields["max_ejection_time"]),
        max_ejection_percent=_integer(node, fields["max_ejection_percent"]),
        success_rate=success_rate,
        panic_threshold=_number(node, fields["panic_threshold"]),
    )
    rules_on = policy.consecutive_5xx or policy.consecutive_gateway_errors or policy.success_rate
    if not rules_on and (sr_node is None or success_rate is not None):  # else: reported
        raise node.error(
            "no ejection rule is on",
            hint="set consecutive_5xx, consecutive_gateway_errors or success_rate",
        )
    return policy


def _success_rate(node: Node) -> SuccessRatePolicy:
    fields = schema.SUCCESS_RATE
    node.check_keys(fields.keys)
    return SuccessRatePolicy(
        minimum_hosts=_integer(node, fields["minimum_hosts"]),
        request_volume=_integer(node, fields["request_volume"]),
        stdev_factor=_number(node, fields["stdev_factor"]),
    )


def parse_circuit_breakers(node: Node) -> CircuitBreakerPolicy:
    node.check_keys(schema.BREAKER_KEYS)
    values = {
        f.name: attempt(partial(f.integer, node), None) if node.has(f.name) else None
        for f in schema.BREAKERS.fields
    }
    return CircuitBreakerPolicy(**values)


def parse_health_check(node: Node) -> HealthCheckPolicy:
    fields = schema.HEALTH
    node.check_keys(fields.keys)
    tcp: bool | None = attempt(lambda: fields["tcp"].read(node).boolean(), None)
    path = attempt(lambda: _http_path(node), None)
    if tcp is not None and tcp == node.has("http_path"):
        raise node.error("give exactly one of http_path or tcp: true")
    policy = HealthCheckPolicy(
        http_path=path,
        interval=_positive_duration(node, fields["interval"]),
        timeout=_positive_duration(node, fields["timeout"]),
        unhealthy_threshold=_integer(node, fields["unhealthy_threshold"]),
        healthy_threshold=_integer(node, fields["healthy_threshold"]),
    )
    if policy.timeout > policy.interval:
        raise node.error("timeout must not be longer than interval")
    return policy


def _http_path(node: Node) -> str | None:
    if not node.has("http_path"):
        return None
    child = node.child("http_path")
    path = child.string()
    if not path.startswith("/"):
        raise child.error("must start with /")
    return path
