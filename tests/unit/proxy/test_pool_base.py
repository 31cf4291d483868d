"""PoolBase: connecting within a deadline and within the cluster's circuit breaker,
shared by the HTTP/1.1 and HTTP/2 pools. The connector and the connections are fakes:
what is tested is the bookkeeping around them (counts, breaker units, pending
requests, errors)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from gossamer.errors import UpstreamConnectError, UpstreamTimeout
from gossamer.proxy.config import BreakerLimits
from gossamer.proxy.service import Overflow
from gossamer.proxy.transport.pool_base import PoolBase
from gossamer.proxy.upstream.breaker import CONNECTIONS, PENDING, CircuitBreaker


class Conn:
    def __init__(self, owner: object) -> None:
        self.loop = asyncio.get_running_loop()
        self._owner = owner
        self.room = 1  # exchanges it can still take

    @property
    def usable(self) -> bool:
        return self.room > 0


class FakePool(PoolBase[Conn]):
    """Keeps its connections in a list; `_reuse` takes one with room."""

    __slots__ = ("conns",)

    def __init__(
        self, behaviour: Callable[[float], Awaitable[None]], breaker: CircuitBreaker | None = None
    ) -> None:
        async def connect(conn: Conn, allowed: float) -> None:
            await behaviour(allowed)

        super().__init__(connect, idle_timeout=60, clock=lambda: 0.0, breaker=breaker)
        self.conns: list[Conn] = []

    def _new_conn(self) -> Conn:
        return Conn(self)

    def _opened(self, conn: Conn) -> None:
        self.conns.append(conn)

    def _reuse(self) -> Conn | None:
        for conn in self.conns:
            if conn.usable:
                conn.room -= 1
                return conn
        return None


async def ok(seconds: float) -> None:
    pass


def breaker(**limits: int) -> tuple[CircuitBreaker, list[str]]:
    seen: list[str] = []
    return CircuitBreaker("c", BreakerLimits(**limits), seen.append), seen


def now() -> float:
    return asyncio.get_running_loop().time()


# -- connecting within the deadline ---------------------------------------------------
async def test_a_connection_is_counted_while_it_lives() -> None:
    allowed: list[float] = []

    async def record(seconds: float) -> None:
        allowed.append(seconds)

    pool = FakePool(record)
    conn = await pool._open(now() + 5)
    assert pool.open == 1 and pool.connects_total == 1 and conn._owner is pool
    assert pool.conns == [conn]
    assert 4 < allowed[0] <= 5  # the connector gets the time left
    pool._lost()
    assert pool.open == 0


async def test_a_refused_connection_is_not_counted_and_leaves_the_pool() -> None:
    async def refused(seconds: float) -> None:
        raise UpstreamConnectError("cannot connect to 127.0.0.1:9: Connection refused")

    pool = FakePool(refused)
    with pytest.raises(UpstreamConnectError, match="refused") as info:
        await pool._open(now() + 5)
    assert not isinstance(info.value, UpstreamTimeout)
    assert pool.open == 0 and pool.connects_total == 1 and pool.conns == []


async def test_a_connect_failure_after_the_deadline_is_a_timeout_naming_the_cause() -> None:
    async def slow_then_fail(seconds: float) -> None:
        await asyncio.sleep(seconds + 0.01)
        raise UpstreamConnectError("cannot connect to 10.0.0.9:80: timed out")

    pool = FakePool(slow_then_fail)
    with pytest.raises(
        UpstreamTimeout,
        match=r"timeout passed while connecting \(cannot connect to 10\.0\.0\.9:80",
    ):
        await pool._open(now() + 0.02)
    assert pool.open == 0


async def test_no_time_left_does_not_call_the_connector() -> None:
    calls: list[float] = []

    async def record(seconds: float) -> None:
        calls.append(seconds)

    pool = FakePool(record)
    with pytest.raises(UpstreamTimeout, match="no time left"):
        await pool._open(now() - 1)
    assert calls == [] and pool.open == 0


async def test_cancelling_the_connect_gives_the_count_and_the_unit_back() -> None:
    started = asyncio.Event()

    async def hang(seconds: float) -> None:
        started.set()
        await asyncio.sleep(60)

    b, _ = breaker(max_connections=1)
    pool = FakePool(hang, b)
    task = asyncio.create_task(pool.fresh(now() + 60))
    await started.wait()
    assert pool.open == 1 and b.connections == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pool.open == 0 and b.connections == 0


# -- within the circuit breaker -------------------------------------------------------
async def test_each_connection_holds_a_unit_until_it_is_lost() -> None:
    b, seen = breaker(max_connections=2)
    pool = FakePool(ok, b)
    await pool.fresh(now() + 5)
    await pool.fresh(now() + 5)
    assert b.connections == 2 and pool.open == 2
    pool._lost()
    assert b.connections == 1 and pool.open == 1 and seen == []


async def test_a_failed_connect_gives_its_unit_back() -> None:
    async def refused(seconds: float) -> None:
        raise UpstreamConnectError("refused")

    b, _ = breaker(max_connections=1)
    pool = FakePool(refused, b)
    with pytest.raises(UpstreamConnectError):
        await pool.fresh(now() + 5)
    assert b.connections == 0


async def test_over_max_connections_a_request_waits_for_a_unit() -> None:
    b, seen = breaker(max_connections=1, max_pending_requests=1)
    pool = FakePool(ok, b)
    first = await pool.fresh(now() + 5)
    first.room = 0  # busy
    waiting = asyncio.create_task(pool.fresh(now() + 5))
    await asyncio.sleep(0)
    assert b.pending == 1 and not waiting.done()
    pool.conns.remove(first)
    pool._lost()  # the first connection closed: its unit goes to the waiter
    second = await asyncio.wait_for(waiting, 1)
    assert second is not first and b.connections == 1 and b.pending == 0
    assert pool.connects_total == 2 and seen == []


async def test_a_waiter_takes_a_connection_that_has_room_again() -> None:
    b, _ = breaker(max_connections=1, max_pending_requests=5)
    pool = FakePool(ok, b)
    conn = await pool.fresh(now() + 5)
    conn.room = 0
    waiters = [asyncio.create_task(pool.fresh(now() + 5)) for _ in range(3)]
    await asyncio.sleep(0)
    assert b.pending == 3
    conn.room = 2  # two streams ended (HTTP/2): one wake-up reaches two waiters
    pool._pass_on(conn)
    done, pending = await asyncio.wait(waiters, timeout=0.2)
    assert [t.result() for t in done] == [conn, conn]
    assert len(pending) == 1 and b.pending == 1 and b.connections == 1
    assert pool.connects_total == 1
    pending.pop().cancel()


async def test_pending_requests_over_the_limit_overflow_at_once() -> None:
    b, seen = breaker(max_connections=1, max_pending_requests=1)
    pool = FakePool(ok, b)
    conn = await pool.fresh(now() + 5)
    conn.room = 0
    waiting = asyncio.create_task(pool.fresh(now() + 5))
    await asyncio.sleep(0)
    with pytest.raises(Overflow, match="max_pending_requests"):
        await pool.fresh(now() + 5)
    assert seen == [PENDING] and b.pending == 1
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert b.pending == 0 and CONNECTIONS not in seen


async def test_a_pending_request_times_out_at_its_deadline() -> None:
    b, _ = breaker(max_connections=1)
    pool = FakePool(ok, b)
    conn = await pool.fresh(now() + 5)
    conn.room = 0
    with pytest.raises(UpstreamTimeout, match="waiting for a connection"):
        await pool.fresh(now() + 0.05)
    assert b.pending == 0 and b.connections == 1
