"""PoolBase: connecting within a deadline, counted, shared by the HTTP/1.1 and HTTP/2
pools (the connector is a fake: what is tested is the bookkeeping around it)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gossamer.errors import UpstreamConnectError, UpstreamTimeout
from gossamer.proxy.pool_base import PoolBase


class Conn:
    def __init__(self, owner: Any) -> None:
        self.loop = asyncio.get_running_loop()
        self._owner = owner


def pool_with(behaviour: Any) -> PoolBase[Conn]:
    async def connect(conn: Conn, allowed: float) -> None:
        await behaviour(allowed)

    return PoolBase(connect)


async def test_a_connection_is_counted_while_it_lives() -> None:
    allowed: list[float] = []

    async def ok(seconds: float) -> None:
        allowed.append(seconds)

    pool = pool_with(ok)
    conn = Conn(pool)
    await pool._connect_new(conn, conn.loop.time() + 5)
    assert pool.open == 1 and pool.connects_total == 1 and conn._owner is pool
    assert 4 < allowed[0] <= 5  # the connector gets the time left


async def test_a_refused_connection_is_not_counted_and_leaves_the_pool() -> None:
    async def refused(seconds: float) -> None:
        raise UpstreamConnectError("cannot connect to 127.0.0.1:9: Connection refused")

    pool = pool_with(refused)
    conn = Conn(pool)
    with pytest.raises(UpstreamConnectError, match="refused") as info:
        await pool._connect_new(conn, conn.loop.time() + 5)
    assert not isinstance(info.value, UpstreamTimeout)
    assert pool.open == 0 and pool.connects_total == 1 and conn._owner is None


async def test_a_connect_failure_after_the_deadline_is_a_timeout_naming_the_cause() -> None:
    async def slow_then_fail(seconds: float) -> None:
        await asyncio.sleep(seconds + 0.01)
        raise UpstreamConnectError("cannot connect to 10.0.0.9:80: timed out")

    pool = pool_with(slow_then_fail)
    conn = Conn(pool)
    with pytest.raises(
        UpstreamTimeout, match=r"timeout passed while connecting \(cannot connect to 10\.0\.0\.9:80"
    ):
        await pool._connect_new(conn, conn.loop.time() + 0.02)
    assert pool.open == 0 and conn._owner is None


async def test_no_time_left_does_not_call_the_connector() -> None:
    calls: list[float] = []

    async def record(seconds: float) -> None:
        calls.append(seconds)

    pool = pool_with(record)
    conn = Conn(pool)
    with pytest.raises(UpstreamTimeout, match="no time left"):
        await pool._connect_new(conn, conn.loop.time() - 1)
    assert calls == [] and pool.open == 0 and conn._owner is None


async def test_cancelling_the_connect_gives_the_count_back() -> None:
    started = asyncio.Event()

    async def hang(seconds: float) -> None:
        started.set()
        await asyncio.sleep(60)

    pool = pool_with(hang)
    conn = Conn(pool)
    task = asyncio.create_task(pool._connect_new(conn, conn.loop.time() + 60))
    await started.wait()
    assert pool.open == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pool.open == 0 and conn._owner is None
