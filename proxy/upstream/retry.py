"""Retry decisions, backoff and the retry budget (pure; clock and randomness injected).

Theory of operation:
- A failed try is retried when every rule allows it: the route has a retry policy with
  tries left; the failure is a condition the policy names (`connect-failure`, `reset`,
  or a response status in `retry_status_codes`; a per-try timeout counts as a 504);
  the method is idempotent (RFC 9110 section 9.2.2) unless the policy says otherwise
  (a connect failure is always safe: nothing was sent); the request body can be
  replayed (not yet streamed, or streamed but still held in the replay buffer); and
  the budget has room. gRPC: a trailers-only answer whose grpc-status the policy names
  (`unavailable`...) is retried whatever the method, but only when the request body
  had fully arrived within the replay limit (`grpc_retryable`).
- Backoff is exponential with full jitter: try n waits uniform(0, min(max, base x 2^(n-1))).
- The budget (as Finagle's and linkerd's) stops retry storms: over a sliding window
  (`window` seconds in `buckets` slices) retries may not exceed `percent` of requests
  plus `min_per_second x window`. Requests are deposited as they start; a retry
  withdraws. When every endpoint fails, retries fall to that fraction instead of
  multiplying the load by the number of attempts.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from gossamer.proxy.config import IDEMPOTENT_METHODS, RetryPolicy
from gossamer.proxy.transport.h2 import grpc

Clock = Callable[[], float]


class Failure(StrEnum):
    CONNECT_FAILURE = "connect-failure"  # TCP or TLS connect failed: nothing was sent
    RESET = "reset"  # the connection broke before a full response head arrived
    TIMEOUT = "timeout"  # the per-try timeout expired (treated as a 504)


def retry_allowed(
    policy: RetryPolicy,
    method: str,
    *,
    failure: Failure | None = None,
    status: int = 0,
    replayable: bool = True,
) -> bool:
    """Whether this outcome of a try may be retried (tries left and budget aside)."""
    if not replayable:
        return False
    if failure is Failure.CONNECT_FAILURE:
        return "connect-failure" in policy.retry_on
    if not policy.retry_non_idempotent and method not in IDEMPOTENT_METHODS:
        return False
    if failure is Failure.RESET:
        return "reset" in policy.retry_on
    if failure is Failure.TIMEOUT:
        return 504 in policy.retry_status_codes
    return status in policy.retry_status_codes


def grpc_retryable(resp: Any, statuses: frozenset[int], body: Any) -> bool:
    """A gRPC answer that may be retried: trailers-only (nothing reached the client)
    with a status the policy names, for a call whose request body had fully arrived and
    is still held for replay (a unary call; never a streaming call under way)."""
    if resp.body is not None:
        return False
    if body is not None and not (body.stream.done and body.replayable):
        return False
    return grpc.status_of(resp.headers) in statuses


def backoff_delay(policy: RetryPolicy, retry: int, rng: random.Random) -> float:
    """Seconds to wait before retry number `retry` (1 for the first retry)."""
    ceiling = min(policy.backoff_max, policy.backoff_base * (2.0 ** max(retry - 1, 0)))
    return rng.random() * ceiling


class RetryBudget:
    """Retries <= percent of requests + min_per_second x window, over a sliding window."""

    __slots__ = (
        "_epoch",
        "_requests",
        "_retries",
        "_slice",
        "clock",
        "exhausted_total",
        "min_per_second",
        "percent",
        "requests_total",
        "retries_total",
        "window",
    )

    def __init__(
        self,
        percent: float,
        min_per_second: float,
        *,
        window: float = 10.0,
        buckets: int = 10,
        clock: Clock,
    ) -> None:
        self.percent = percent
        self.min_per_second = min_per_second
        self.window = window
        self.clock = clock
        self._slice = window / buckets
        self._requests = [0] * buckets
        self._retries = [0] * buckets
        self._epoch = int(clock() / self._slice)
        self.requests_total = 0
        self.retries_total = 0
        self.exhausted_total = 0

    def _advance(self) -> int:
        epoch = int(self.clock() / self._slice)
        n = len(self._requests)
        if epoch != self._epoch:
            for e in range(max(self._epoch + 1, epoch - n + 1), epoch + 1):
                self._requests[e % n] = 0
                self._retries[e % n] = 0
            self._epoch = epoch
        return epoch % n

    def record_request(self) -> None:
        """Deposit: a request started (its first try)."""
        self._requests[self._advance()] += 1
        self.requests_total += 1

    def available(self) -> float:
        """Retries still allowed in the current window."""
        self._advance()
        allowed = self.percent / 100.0 * sum(self._requests) + self.min_per_second * self.window
        return allowed - sum(self._retries)

    def withdraw(self) -> bool:
        """Take one retry if the budget allows it."""
        if self.available() >= 1.0:
            self._retries[self._epoch % len(self._retries)] += 1
            self.retries_total += 1
            return True
        self.exhausted_total += 1
        return False
