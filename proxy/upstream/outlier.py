"""Outlier detection: which hosts of a cluster to leave out for a while (pure logic).

No I/O: the clock value (`now`) and the random source (for the enforcing percentages)
are passed in, so every rule is unit- and property-tested. The data path calls
`record` with each exchange's outcome; the sidecar calls `tick` every `interval`.

Theory of operation (Envoy's outlier detection,
https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/outlier):
- Outcomes: a response status, or 0 for a locally originated failure (connect failure,
  reset). A success is a status below 500. Local failures count as 5xx and as gateway
  failures (Envoy without `split_external_local_origin_errors`).
- Consecutive 5xx: after `consecutive_5xx` failures in a row the host is ejected with
  probability `enforcing_consecutive_5xx` %. Consecutive gateway failures likewise, for
  502/503/504 and local failures (`consecutive_failures`). A success resets both counts;
  reaching a threshold resets its count whether or not the ejection happens.
- Success rate, at each interval: hosts with at least `success_rate_request_volume`
  requests during the interval are candidates; with at least
  `success_rate_minimum_hosts` candidates, mean and (population) standard deviation of
  their success rates give the threshold mean - stdev_factor/1000 x stdev; a candidate
  below it is ejected with probability `enforcing_success_rate` %. The interval's counts
  then start again.
- Ejection time: each ejection raises the host's multiplier (while base x multiplier is
  below max + base); the host is out for min(base x multiplier, max(max, base)) seconds.
  At each interval a host that is in service has its multiplier lowered by one, so a
  host that behaves returns to the base time.
- `max_ejection_percent`: an ejection that would put more than that share of the hosts
  out at once does not happen, except that one host may always be out.
- Panic (the balancer side, cluster.py): when too few hosts are left in service, every
  host takes traffic, ejected or not.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from gossamer.proxy.config import OutlierDetection
from gossamer.proxy.upstream.balancer import Host

GATEWAY_ERRORS = frozenset({502, 503, 504})
LOCAL_FAILURE = 0  # the outcome of a connect failure or reset

CONSECUTIVE_5XX = "consecutive_5xx"
CONSECUTIVE_GATEWAY = "consecutive_gateway_failure"
SUCCESS_RATE = "success_rate"


def is_ejected(host: Host, now: float) -> bool:
    return host.ejected_until > now


def _enforced(percent: int, rng: random.Random) -> bool:
    return percent >= 100 or (percent > 0 and rng.random() * 100 < percent)


def may_eject(hosts: Sequence[Host], policy: OutlierDetection, now: float) -> bool:
    """Whether one more host may be ejected under `max_ejection_percent`."""
    out = sum(1 for h in hosts if h.ejected_until > now)
    return out == 0 or (out + 1) * 100 <= policy.max_ejection_percent * len(hosts)


def eject(host: Host, policy: OutlierDetection, now: float) -> float:
    """Eject `host` now; returns for how long."""
    base = policy.base_ejection
    cap = max(policy.max_ejection, base)
    if base * host.ejections < cap + base:
        host.ejections += 1
    length = min(base * host.ejections, cap)
    host.ejected_until = now + length
    return length


def record(
    host: Host,
    status: int,
    hosts: Sequence[Host],
    policy: OutlierDetection,
    now: float,
    rng: random.Random,
) -> str | None:
    """Count one outcome (a status, or LOCAL_FAILURE); the reason when it ejected."""
    host.sr_total += 1
    if 0 < status < 500:
        host.sr_ok += 1
        host.failures = 0
        host.errors_5xx = 0
        return None
    reason = None
    host.errors_5xx += 1
    if policy.consecutive_5xx and host.errors_5xx >= policy.consecutive_5xx:
        host.errors_5xx = 0
        if _enforced(policy.enforcing_consecutive_5xx, rng):
            reason = CONSECUTIVE_5XX
    if status == LOCAL_FAILURE or status in GATEWAY_ERRORS:
        host.failures += 1
        if policy.consecutive_failures and host.failures >= policy.consecutive_failures:
            host.failures = 0
            if reason is None and _enforced(policy.enforcing_consecutive_gateway, rng):
                reason = CONSECUTIVE_GATEWAY
    else:
        host.failures = 0
    if reason is None or is_ejected(host, now) or not may_eject(hosts, policy, now):
        return None
    eject(host, policy, now)
    return reason


def success_rate_outliers(hosts: Sequence[Host], policy: OutlierDetection) -> list[Host]:
    """Hosts whose success rate this interval is below mean - factor x stdev."""
    candidates = [h for h in hosts if h.sr_total >= max(policy.success_rate_request_volume, 1)]
    if len(candidates) < max(policy.success_rate_minimum_hosts, 1):
        return []
    rates = [100.0 * h.sr_ok / h.sr_total for h in candidates]
    mean = math.fsum(rates) / len(rates)
    stdev = math.sqrt(math.fsum((r - mean) ** 2 for r in rates) / len(rates))
    # the margin keeps rounding from making equal rates fall below their own mean
    threshold = mean - policy.success_rate_stdev_factor / 1000.0 * stdev - 1e-9
    return [h for h, r in zip(candidates, rates, strict=True) if r < threshold]


def tick(
    hosts: Sequence[Host], policy: OutlierDetection, now: float, rng: random.Random
) -> list[tuple[Host, str]]:
    """The interval's work: lower the multipliers of hosts in service, eject
    success-rate outliers, start a new interval. Returns the ejections made."""
    for h in hosts:
        if h.ejections and h.ejected_until <= now:
            h.ejections -= 1
    ejected: list[tuple[Host, str]] = []
    if policy.success_rate:
        active = [h for h in hosts if h.ejected_until <= now]
        for h in success_rate_outliers(active, policy):
            if _enforced(policy.enforcing_success_rate, rng) and may_eject(hosts, policy, now):
                eject(h, policy, now)
                ejected.append((h, SUCCESS_RATE))
    for h in hosts:
        h.sr_total = 0
        h.sr_ok = 0
    return ejected


__all__ = [
    "CONSECUTIVE_5XX",
    "CONSECUTIVE_GATEWAY",
    "GATEWAY_ERRORS",
    "LOCAL_FAILURE",
    "SUCCESS_RATE",
    "eject",
    "is_ejected",
    "may_eject",
    "record",
    "success_rate_outliers",
    "tick",
]
