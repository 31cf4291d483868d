"""Retry decisions, backoff with jitter and the retry budget."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gossamer.errors import ConfigError
from gossamer.proxy.config import RetryPolicy
from gossamer.proxy.upstream.retry import Failure, RetryBudget, backoff_delay, retry_allowed

POLICY = RetryPolicy()


@pytest.mark.parametrize(
    ("method", "failure", "status", "replayable", "expected"),
    [
        ("GET", Failure.CONNECT_FAILURE, 0, True, True),
        ("POST", Failure.CONNECT_FAILURE, 0, True, True),  # nothing was sent
        ("GET", Failure.RESET, 0, True, True),
        ("POST", Failure.RESET, 0, True, False),  # may have been processed
        ("PUT", Failure.RESET, 0, True, True),  # idempotent
        ("GET", None, 503, True, True),
        ("GET", None, 502, True, True),
        ("GET", None, 504, True, True),
        ("GET", None, 500, True, False),
        ("GET", None, 404, True, False),
        ("POST", None, 503, True, False),
        ("GET", Failure.TIMEOUT, 0, True, True),
        ("GET", Failure.RESET, 0, False, False),  # body streamed past the buffer
        ("GET", Failure.CONNECT_FAILURE, 0, False, False),
    ],
)
def test_retry_allowed(method, failure, status, replayable, expected):
    assert (
        retry_allowed(POLICY, method, failure=failure, status=status, replayable=replayable)
        is expected
    )


def test_conditions_must_be_configured():
    policy = RetryPolicy(retry_on=frozenset({"connect-failure"}), retry_status_codes=frozenset())
    assert not retry_allowed(policy, "GET", failure=Failure.RESET)
    assert not retry_allowed(policy, "GET", status=503)
    assert not retry_allowed(policy, "GET", failure=Failure.TIMEOUT)
    assert retry_allowed(policy, "GET", failure=Failure.CONNECT_FAILURE)


def test_non_idempotent_when_configured():
    policy = RetryPolicy(retry_non_idempotent=True)
    assert retry_allowed(policy, "POST", status=503)
    assert retry_allowed(policy, "PATCH", failure=Failure.RESET)


def test_policy_validation():
    with pytest.raises(ConfigError, match="unknown retry condition"):
        RetryPolicy(retry_on=frozenset({"gateway"}))
    with pytest.raises(ConfigError):
        RetryPolicy(attempts=0)
    with pytest.raises(ConfigError):
        RetryPolicy(backoff_base=1.0, backoff_max=0.5)


@given(st.integers(1, 20), st.integers(0, 2**32))
def test_backoff_is_jittered_and_capped(retry, seed):
    policy = RetryPolicy(backoff_base=0.01, backoff_max=0.2)
    delay = backoff_delay(policy, retry, random.Random(seed))
    assert 0 <= delay <= min(0.2, 0.01 * 2 ** (retry - 1))


def test_backoff_grows_exponentially():
    policy = RetryPolicy(backoff_base=0.01, backoff_max=10)
    rng = random.Random(4)
    means = [sum(backoff_delay(policy, n, rng) for _ in range(2000)) / 2000 for n in (1, 2, 3, 4)]
    for a, b in itertools.pairwise(means):
        assert 1.6 < b / a < 2.4


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_budget_allows_min_per_second_reserve_then_a_percentage():
    clock = FakeClock()
    budget = RetryBudget(20.0, 1.0, window=10.0, clock=clock)
    # reserve: 1/s over 10 s = 10 retries with no requests at all
    assert sum(budget.withdraw() for _ in range(50)) == 10
    assert budget.exhausted_total == 40
    # 100 requests add 20% = 20 retries more
    for _ in range(100):
        budget.record_request()
    assert sum(budget.withdraw() for _ in range(50)) == 20


def test_budget_window_slides():
    clock = FakeClock()
    budget = RetryBudget(10.0, 0.0, window=10.0, clock=clock)
    for _ in range(100):
        budget.record_request()
    assert sum(budget.withdraw() for _ in range(20)) == 10
    clock.now += 5
    assert not budget.withdraw()  # same window still: both deposits and withdrawals count
    clock.now += 6  # the first slices left the window
    assert budget.available() == 0
    for _ in range(100):
        budget.record_request()
    assert sum(budget.withdraw() for _ in range(20)) == 10


@given(st.lists(st.tuples(st.floats(0, 3), st.booleans()), max_size=300))
def test_budget_never_exceeds_its_bound(events):
    clock = FakeClock()
    budget = RetryBudget(20.0, 10.0, window=10.0, clock=clock)
    requests = 0
    retries = 0
    for dt, is_request in events:
        clock.now += dt
        if is_request:
            budget.record_request()
            requests += 1
        elif budget.withdraw():
            retries += 1
        elapsed = clock.now - 1000.0
        # over the whole run, at most 20% of requests plus 10/s for every started window
        assert retries <= 0.2 * requests + 10 * 10 * (elapsed // 10 + 2)
