"""Per-service traffic policy from mesh.yaml: load balancing, timeouts, retries, authorization.

Each entry of the `services:` list may carry, beside the discovery fields (name,
namespace, ports, endpoints: parsed by the registry's mesh-file source), these keys:

```yaml
lb_policy: round_robin        # random | least_request | ewma | ring_hash
hash_header: x-user           # ring_hash only: the request header hashed to pick an endpoint
timeout: 5s                   # whole-request timeout (0 disables it)
stream_idle_timeout: 60s      # cut a request stream with no byte moving this long (0: off)
request_timeout: 60s          # the whole request must have arrived by then (0: off)
retries: {attempts: 2, per_try_timeout: 1s, on: [connect-failure, reset, 503], budget_percent: 20}
authorization: {allow: [spiffe://gossamer.local/ns/default/sa/web]}   # absent: every mesh identity
outlier_detection: {...}      # circuit_breakers: {...}, health_check: {...}: see resilience.py
```

`parse_service_policy` reads only these keys (declared, with their defaults and bounds,
in gossamer/meshconfig/schema.py). Values are validated here, once, and errors name the
field and line; inside `yamlconf.collecting()` every independent error is reported.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from gossamer.contract.identity import spiffe_matches
from gossamer.control.resilience import (
    CircuitBreakerPolicy,
    HealthCheckPolicy,
    OutlierPolicy,
    parse_circuit_breakers,
    parse_health_check,
    parse_outlier,
    positive_duration,
)
from gossamer.meshconfig import schema
from gossamer.yamlconf import Node, attempt, parse_duration, report

DEFAULT_LB = str(schema.SERVICE["lb_policy"].default)
T = TypeVar("T")

_HEADER_NAME = re.compile(r"^[a-z0-9!#$%&'*+.^_`|~-]+$")
_SPIFFE = re.compile(r"^spiffe://([a-z0-9._-]+)/ns/([a-z0-9-]+|\*)/sa/([a-z0-9-]+|\*)$")


@dataclass(frozen=True)
class RetryPolicy:
    """`attempts` is the number of retries after the first try (Istio's meaning)."""

    attempts: int
    per_try_timeout: float | None = None
    on: tuple[str, ...] = tuple(schema.RETRIES["on"].default)
    status_codes: tuple[int, ...] = ()
    budget_percent: float | None = None


@dataclass(frozen=True)
class Authorization:
    """SPIFFE IDs allowed to call the service; an ID ending in `*` matches a prefix
    (e.g. `spiffe://td/ns/shop/sa/*`: every service of namespace shop)."""

    allow: tuple[str, ...]

    def allows(self, spiffe_id: str) -> bool:
        return any(spiffe_matches(entry, spiffe_id) for entry in self.allow)


@dataclass(frozen=True)
class ServicePolicy:
    lb_policy: str = schema.SERVICE["lb_policy"].default
    hash_header: str | None = None
    timeout: float | None = None
    retries: RetryPolicy | None = None
    authorization: Authorization | None = None
    outlier: OutlierPolicy | None = None
    circuit_breakers: CircuitBreakerPolicy | None = None
    health_check: HealthCheckPolicy | None = None
    stream_idle_timeout: float = parse_duration(schema.SERVICE["stream_idle_timeout"].default)
    request_timeout: float = parse_duration(schema.SERVICE["request_timeout"].default)

    def allows(self, spiffe_id: str) -> bool:
        """Whether a caller with this identity may call the service (absent: everyone)."""
        return self.authorization is None or self.authorization.allows(spiffe_id)


DEFAULT_POLICY = ServicePolicy()


def parse_service_policy(service: Node, trust_domain: str) -> ServicePolicy:
    """Read the policy keys of one `services:` entry (other keys are not looked at)."""
    fields = schema.SERVICE
    lb: str | None = attempt(lambda: fields["lb_policy"].choice(service), None)
    hash_header = attempt(lambda: _hash_header(service, lb), None)
    timeout_node = fields["timeout"].present(service)
    timeout = attempt(timeout_node.duration, None) if timeout_node else None

    def section(key: str, parse: Callable[[Node], T]) -> T | None:
        node = fields[key].present(service)
        return attempt(lambda: parse(node), None) if node is not None else None

    return ServicePolicy(
        lb or DEFAULT_LB,
        hash_header,
        timeout,
        section("retries", _parse_retries),
        section("authorization", lambda node: _parse_authorization(node, trust_domain)),
        outlier=section("outlier_detection", parse_outlier),
        circuit_breakers=section("circuit_breakers", parse_circuit_breakers),
        health_check=section("health_check", parse_health_check),
        stream_idle_timeout=_bounded_duration(service, "stream_idle_timeout"),
        request_timeout=_bounded_duration(service, "request_timeout"),
    )


def _bounded_duration(service: Node, key: str) -> float:
    """A duration field of the service within its schema bounds (its default if absent)."""
    field = schema.SERVICE[key]
    default = parse_duration(field.default)

    def read() -> float:
        node = field.read(service)
        value = node.duration()
        if not field.minimum <= value <= field.maximum:  # type: ignore[operator]
            raise node.error(f"must be between 0s and {field.maximum:g}s (0 disables it)")
        return value

    return attempt(read, default)


def _hash_header(service: Node, lb: str | None) -> str | None:
    node = schema.SERVICE["hash_header"].present(service)
    if node is None:
        return None
    hash_header = node.string().strip().lower()
    if not _HEADER_NAME.match(hash_header):
        raise node.error(f"{hash_header!r} is not a valid HTTP header name")
    if lb is not None and lb != "ring_hash":  # an invalid lb_policy is reported already
        raise node.error(
            "hash_header only applies to lb_policy ring_hash",
            hint="set lb_policy: ring_hash or remove hash_header",
        )
    return hash_header


def _parse_retries(node: Node) -> RetryPolicy:
    fields = schema.RETRIES
    node.check_keys(fields.keys)
    attempts = attempt(lambda: fields["attempts"].integer(node), 0)
    per_try = None
    if node.has("per_try_timeout"):
        per_try_node = node.child("per_try_timeout")
        per_try = attempt(lambda: positive_duration(per_try_node), None)
    conditions: list[str] = []
    codes: list[int] = []
    if node.has("on"):
        on = node.child("on")
        items = attempt(lambda: list(on.items()), None)
        if items == []:
            report(on.error("list at least one retry condition"))
        for item in items or []:
            attempt(partial(_condition, item, conditions, codes), None)
    else:
        conditions = list(RetryPolicy.on)
    budget = None
    if node.has("budget_percent"):
        budget_node = node.child("budget_percent")
        budget = attempt(lambda: _budget(budget_node), None)
    return RetryPolicy(attempts, per_try, tuple(conditions), tuple(codes), budget)


def _condition(item: Node, conditions: list[str], codes: list[int]) -> None:
    value = item.value
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if not 100 <= value <= 599:
            raise item.error(f"HTTP status {value} is not between 100 and 599")
        if value not in codes:
            codes.append(value)
        return
    name = item.choice(schema.RETRY_CONDITIONS)
    if name not in conditions:
        conditions.append(name)


def _budget(node: Node) -> float:
    budget = schema.RETRIES["budget_percent"]
    value = node.number(minimum=budget.minimum, maximum=budget.maximum)
    if value <= 0:
        raise node.error("must be greater than 0 (omit it for no budget)")
    return value


def _parse_authorization(node: Node, trust_domain: str) -> Authorization:
    node.check_keys(schema.AUTHORIZATION_KEYS)
    allow_node = schema.AUTHORIZATION["allow"].read(node)
    if allow_node.value is None:
        raise allow_node.error(
            "expected a list of SPIFFE IDs",
            hint="use allow: [] to deny every caller, or remove authorization to allow all",
        )
    ids: list[str] = []
    for item in allow_node.items():
        pattern = attempt(partial(_allowed, item, trust_domain), None)
        if pattern is not None:
            ids.append(pattern)
    return Authorization(tuple(ids))


def _allowed(item: Node, trust_domain: str) -> str:
    """One `allow` entry, checked, as the pattern Authorization matches."""
    value = item.string().strip()
    m = _SPIFFE.match(value)
    if m is None:
        raise item.error(
            f"{value!r} is not a SPIFFE ID of the form spiffe://<trust-domain>/ns/<namespace>/sa/<service>",
            hint="use * as the namespace or service to match all of them",
        )
    if m.group(1) != trust_domain:
        raise item.error(
            f"trust domain {m.group(1)!r} is not this mesh's trust domain {trust_domain!r}"
        )
    if m.group(2) == "*" and m.group(3) != "*":
        raise item.error("a * namespace needs a * service (spiffe://td/ns/*/sa/*)")
    return _as_pattern(value)


def _as_pattern(spiffe_id: str) -> str:
    """`.../ns/x/sa/*` -> prefix `.../ns/x/sa/*`; `.../ns/*/sa/*` -> `spiffe://td/ns/*`."""
    if spiffe_id.endswith("/ns/*/sa/*"):
        return spiffe_id[: -len("/sa/*")]
    return spiffe_id
