"""Circuit breaker accounting: limits refuse at once and count the overflow; pending
requests wait in order, bounded, and wake when a connection is released."""

from __future__ import annotations

import asyncio

import pytest

from gossamer.proxy.breaker import CircuitBreaker
from gossamer.proxy.config import BreakerLimits
from gossamer.proxy.service import ERRORS, Overflow


def breaker(**limits: int) -> tuple[CircuitBreaker, list[str]]:
    seen: list[str] = []
    return CircuitBreaker("c", BreakerLimits(**limits), seen.append), seen


def test_requests_over_the_limit_overflow_and_are_counted():
    b, seen = breaker(max_requests=2)
    with b.request(), b.request():
        assert b.requests == 2
        with pytest.raises(Overflow), b.request():
            pass
        assert not b.try_acquire_request()
    assert b.requests == 0 and seen == ["max_requests", "max_requests"]
    with b.request():
        pass
    assert ERRORS[Overflow] == (503, b"overflow")


def test_no_limit_means_unlimited():
    b, seen = breaker()
    for _ in range(10000):
        assert b.try_acquire_request() and b.try_acquire_retry() and b.try_acquire_connection()
    assert seen == []


def test_retries_are_limited_and_given_back():
    b, seen = breaker(max_retries=1)
    assert b.try_acquire_retry()
    assert not b.try_acquire_retry()
    b.release_retry()
    assert b.try_acquire_retry()
    assert seen == ["max_retries"]


def test_pending_requests_wait_in_order_and_overflow_beyond_the_limit():
    async def scenario() -> None:
        b, seen = breaker(max_connections=1, max_pending_requests=2)
        assert b.try_acquire_connection()
        assert not b.try_acquire_connection()  # over: the caller may wait
        order: list[int] = []

        async def pend(i: int) -> None:
            await b.wait_connection(5.0)
            order.append(i)
            assert b.try_acquire_connection()

        waiters = [asyncio.create_task(pend(i)) for i in range(2)]
        await asyncio.sleep(0)
        assert b.pending == 2
        with pytest.raises(Overflow):
            await b.wait_connection(5.0)  # a third pending request: refused at once
        assert seen == ["max_pending_requests"]
        b.release_connection()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert order == [0]
        b.release_connection()
        await asyncio.gather(*waiters)
        assert order == [0, 1] and b.pending == 0 and b.connections == 1

    asyncio.run(scenario())


def test_a_pending_request_times_out_and_leaves_the_queue():
    async def scenario() -> None:
        b, _ = breaker(max_connections=0, max_pending_requests=1)
        with pytest.raises(TimeoutError):
            await b.wait_connection(0.01)
        assert b.pending == 0 and not b.has_waiters
        b.notify()  # nobody waiting: nothing happens

    asyncio.run(scenario())
