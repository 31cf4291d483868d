"""Circuit breaker accounting: limits refuse at once and count the overflow; pending
requests wait in order, bounded, and wake when a connection is released."""

from __future__ import annotations

import asyncio

import pytest

from gossamer.proxy.config import BreakerLimits
from gossamer.proxy.service import ERRORS, Overflow
from gossamer.proxy.upstream.breaker import CircuitBreaker


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


def test_a_pending_request_reclaims_an_idle_connection_of_another_endpoint():
    """max_connections 1, held by an idle connection to endpoint A: a request for
    endpoint B closes it and connects instead of waiting for the idle timeout."""
    from gossamer.proxy.transport.pool import EndpointPool, open_plain

    async def scenario() -> None:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        b, seen = breaker(max_connections=1, max_pending_requests=1)
        loop = asyncio.get_running_loop()

        def pool() -> EndpointPool:
            return EndpointPool(
                lambda conn, allowed: open_plain("127.0.0.1", port, conn, allowed),
                clock=loop.time,
                breaker=b,
            )

        a, other = pool(), pool()
        b.reclaim = a.close_idle
        conn, reused = await a.acquire()
        assert not reused and b.connections == 1
        conn.busy = False
        a.release(conn)
        assert a.idle_count == 1
        conn_b, _ = await asyncio.wait_for(other.acquire(loop.time() + 2), 3)
        assert a.idle_count == 0 and a.open == 0 and other.open == 1
        assert b.connections == 1 and b.pending == 0 and seen == []
        conn_b.close()
        await asyncio.sleep(0.01)
        assert b.connections == 0
        server.close()

    asyncio.run(scenario())
