"""Per-service traffic policy from mesh.yaml: load balancing, timeouts, retries, authorization.

Each entry of the `services:` list may carry, beside the discovery fields (name,
namespace, ports, endpoints: parsed by the registry's mesh-file source), these keys:

```yaml
lb_policy: round_robin        # random | least_request | ewma | ring_hash
hash_header: x-user           # ring_hash only: the request header hashed to pick an endpoint
timeout: 5s                   # whole-request timeout (0 disables it)
retries: {attempts: 2, per_try_timeout: 1s, on: [connect-failure, reset, 503], budget_percent: 20}
authorization: {allow: [spiffe://gossamer.local/ns/default/sa/web]}   # absent: every mesh identity
outlier_detection: {...}      # circuit_breakers: {...}, health_check: {...}: see resilience.py
```

`parse_service_policy` reads only these keys; `POLICY_KEYS` lets the mesh-file parser
accept them. Values are validated here, once, and errors name the field and line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gossamer.contract.vocabulary import GrpcRetryOn, HttpRetryOn, LbPolicy
from gossamer.control.resilience import (
    CircuitBreakerPolicy,
    HealthCheckPolicy,
    OutlierPolicy,
    parse_circuit_breakers,
    parse_health_check,
    parse_outlier,
)
from gossamer.yamlconf import Node

LB_POLICIES = tuple(p.value for p in LbPolicy)
POLICY_KEYS = (
    "lb_policy",
    "hash_header",
    "timeout",
    "retries",
    "authorization",
    "outlier_detection",
    "circuit_breakers",
    "health_check",
)
RETRY_KEYS = ("attempts", "per_try_timeout", "on", "budget_percent")

HTTP_RETRY_ON = tuple(c.value for c in HttpRetryOn)
GRPC_RETRY_ON = tuple(c.value for c in GrpcRetryOn)
MAX_RETRY_ATTEMPTS = 10

_HEADER_NAME = re.compile(r"^[a-z0-9!#$%&'*+.^_`|~-]+$")
_SPIFFE = re.compile(r"^spiffe://([a-z0-9._-]+)/ns/([a-z0-9-]+|\*)/sa/([a-z0-9-]+|\*)$")


@dataclass(frozen=True)
class RetryPolicy:
    """`attempts` is the number of retries after the first try (Istio's meaning)."""

    attempts: int
    per_try_timeout: float | None = None
    on: tuple[str, ...] = ("connect-failure", "refused-stream", "unavailable")
    status_codes: tuple[int, ...] = ()
    budget_percent: float | None = None


@dataclass(frozen=True)
class Authorization:
    """SPIFFE IDs allowed to call the service; an ID ending in `*` matches a prefix
    (e.g. `spiffe://td/ns/shop/sa/*`: every service of namespace shop)."""

    allow: tuple[str, ...]

    def allows(self, spiffe_id: str) -> bool:
        for entry in self.allow:
            if entry.endswith("*"):
                if spiffe_id.startswith(entry[:-1]):
                    return True
            elif spiffe_id == entry:
                return True
        return False


@dataclass(frozen=True)
class ServicePolicy:
    lb_policy: str = "round_robin"
    hash_header: str | None = None
    timeout: float | None = None
    retries: RetryPolicy | None = None
    authorization: Authorization | None = None
    outlier: OutlierPolicy | None = None
    circuit_breakers: CircuitBreakerPolicy | None = None
    health_check: HealthCheckPolicy | None = None

    def allows(self, spiffe_id: str) -> bool:
        """Whether a caller with this identity may call the service (absent: everyone)."""
        return self.authorization is None or self.authorization.allows(spiffe_id)


DEFAULT_POLICY = ServicePolicy()


def parse_service_policy(service: Node, trust_domain: str) -> ServicePolicy:
    """Read the policy keys of one `services:` entry (other keys are not looked at)."""
    lb = "round_robin"
    if service.has("lb_policy"):
        lb = service.child("lb_policy").choice(LB_POLICIES)
    hash_header = None
    if service.has("hash_header"):
        node = service.child("hash_header")
        hash_header = node.string().strip().lower()
        if not _HEADER_NAME.match(hash_header):
            raise node.error(f"{hash_header!r} is not a valid HTTP header name")
        if lb != "ring_hash":
            raise node.error(
                "hash_header only applies to lb_policy ring_hash",
                hint="set lb_policy: ring_hash or remove hash_header",
            )
    timeout = None
    if service.has("timeout") and service.child("timeout").value is not None:
        timeout = service.child("timeout").duration()
    retries = None
    if service.has("retries") and service.child("retries").value is not None:
        retries = _parse_retries(service.child("retries"))
    authorization = None
    if service.has("authorization") and service.child("authorization").value is not None:
        authorization = _parse_authorization(service.child("authorization"), trust_domain)

    def section(key: str) -> Node | None:
        return (
            service.child(key)
            if service.has(key) and service.child(key).value is not None
            else None
        )

    outlier_node = section("outlier_detection")
    breaker_node = section("circuit_breakers")
    health_node = section("health_check")
    return ServicePolicy(
        lb,
        hash_header,
        timeout,
        retries,
        authorization,
        outlier=parse_outlier(outlier_node) if outlier_node else None,
        circuit_breakers=parse_circuit_breakers(breaker_node) if breaker_node else None,
        health_check=parse_health_check(health_node) if health_node else None,
    )


def _parse_retries(node: Node) -> RetryPolicy:
    node.check_keys(RETRY_KEYS)
    attempts = node.child("attempts").integer(minimum=0, maximum=MAX_RETRY_ATTEMPTS)
    per_try = None
    if node.has("per_try_timeout"):
        per_try_node = node.child("per_try_timeout")
        per_try = per_try_node.duration()
        if per_try <= 0:
            raise per_try_node.error("must be longer than 0s")
    conditions: list[str] = []
    codes: list[int] = []
    if node.has("on"):
        on = node.child("on")
        items = list(on.items())
        if not items:
            raise on.error("list at least one retry condition")
        for item in items:
            value = item.value
            if isinstance(value, str) and value.isdigit():
                value = int(value)
            if isinstance(value, int) and not isinstance(value, bool):
                if not 100 <= value <= 599:
                    raise item.error(f"HTTP status {value} is not between 100 and 599")
                if value not in codes:
                    codes.append(value)
                continue
            name = item.choice(HTTP_RETRY_ON + GRPC_RETRY_ON)
            if name not in conditions:
                conditions.append(name)
    else:
        conditions = list(RetryPolicy.on)
    budget = None
    if node.has("budget_percent"):
        budget_node = node.child("budget_percent")
        budget = budget_node.number(minimum=0.0, maximum=100.0)
        if budget <= 0:
            raise budget_node.error("must be greater than 0 (omit it for no budget)")
    return RetryPolicy(attempts, per_try, tuple(conditions), tuple(codes), budget)


def _parse_authorization(node: Node, trust_domain: str) -> Authorization:
    node.check_keys(("allow",))
    allow_node = node.child("allow")
    if allow_node.value is None:
        raise allow_node.error(
            "expected a list of SPIFFE IDs",
            hint="use allow: [] to deny every caller, or remove authorization to allow all",
        )
    ids: list[str] = []
    for item in allow_node.items():
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
        ids.append(_as_pattern(value))
    return Authorization(tuple(ids))


def _as_pattern(spiffe_id: str) -> str:
    """`.../ns/x/sa/*` -> prefix `.../ns/x/sa/*`; `.../ns/*/sa/*` -> `spiffe://td/ns/*`."""
    if spiffe_id.endswith("/ns/*/sa/*"):
        return spiffe_id[: -len("/sa/*")]
    return spiffe_id
