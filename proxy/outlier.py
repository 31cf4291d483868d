"""Outlier detection: leave out endpoints that keep failing (pure; clock injected).

Consecutive failures of a host (connect failures, resets, 502/503/504 answers) count
up; a success resets the count. At the threshold the host is ejected for
`base_ejection x ejections` seconds (capped), unless that would put more than
`max_ejection_percent` of the cluster's hosts out at once (one host may always be out).
Ejected hosts are avoided by the balancer while others exist; when the time is up the
host takes traffic again and is ejected for longer if it fails again.
"""

from __future__ import annotations

from collections.abc import Sequence

from gossamer.proxy.balancer import Host
from gossamer.proxy.config import OutlierDetection

GATEWAY_ERRORS = frozenset({502, 503, 504})


def is_ejected(host: Host, now: float) -> bool:
    return host.ejected_until > now


def record_success(host: Host) -> None:
    host.failures = 0
    host.ejections = 0


def record_failure(host: Host, hosts: Sequence[Host], policy: OutlierDetection, now: float) -> bool:
    """Count a failure; True when it ejected the host."""
    host.failures += 1
    if not policy.consecutive_failures or host.failures < policy.consecutive_failures:
        return False
    if is_ejected(host, now):
        return False
    out = sum(1 for h in hosts if is_ejected(h, now))
    if out >= max(1, len(hosts) * policy.max_ejection_percent // 100):
        return False
    host.ejections += 1
    host.failures = 0
    host.ejected_until = now + min(policy.base_ejection * host.ejections, policy.max_ejection)
    return True


def ejected(hosts: Sequence[Host], now: float) -> list[Host]:
    return [h for h in hosts if h.ejected_until > now]
