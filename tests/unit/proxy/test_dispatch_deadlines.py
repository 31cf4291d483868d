"""A try's connection is bounded by the per-try timeout, and a timed-out try counts
against its endpoint (upstream/dispatch.py): what lets a caller ride out a host that
vanished from the network (tests/e2e/test_multinode_node_loss.py)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from gossamer.errors import UpstreamTimeout
from gossamer.proxy.config import Endpoint
from gossamer.proxy.service import PerTryTimeout, Request
from gossamer.proxy.upstream.balancer import Host
from gossamer.proxy.upstream.dispatch import TIMED_OUT, endpoint_service

INF = float("inf")


class SilentPool:
    """A pool whose connections never complete (SYNs unanswered): it gives up at the
    deadline it was given, as PoolBase does, with UpstreamTimeout."""

    def __init__(self) -> None:
        self.deadlines: list[float] = []

    async def acquire(self, deadline: float = INF) -> tuple[Any, bool]:
        self.deadlines.append(deadline)
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, min(deadline, loop.time() + 5.0) - loop.time()))
        raise UpstreamTimeout("no time left to connect")


class HangingConn:
    async def send(self, req: Request, done: Any) -> Any:
        raise PerTryTimeout("no response within the per-try timeout")


class AnsweringPool:
    async def acquire(self, deadline: float = INF) -> tuple[Any, bool]:
        return HangingConn(), True


def cluster(pool: Any) -> tuple[Any, list[tuple[Host, int]]]:
    host = Host(Endpoint("10.0.0.3", 15443))
    results: list[tuple[Host, int]] = []
    runtime = SimpleNamespace(
        config=SimpleNamespace(name="outbound|8080||catalog.default", tls=True),
        breaker=SimpleNamespace(limits=SimpleNamespace(max_requests=None), requests=0),
        pools={host.endpoint.key: pool},
        measure_rtt=False,
        choose=lambda headers, tried: host,
        result=lambda h, status: results.append((h, status)),
    )
    return runtime, results


def request(runtime: Any, *, try_in: float, deadline_in: float) -> Request:
    req = Request("GET", b"/", "catalog", [], None)
    req.cluster = runtime
    now = asyncio.get_running_loop().time()
    req.try_deadline = now + try_in
    req.deadline = now + deadline_in
    return req


async def test_connecting_stops_at_the_per_try_timeout() -> None:
    pool = SilentPool()
    runtime, results = cluster(pool)
    req = request(runtime, try_in=0.05, deadline_in=30.0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(PerTryTimeout):
        await endpoint_service(loop.time)(req)
    assert loop.time() - started < 1.0  # not the cluster's connect timeout
    assert pool.deadlines == [req.try_deadline]
    assert [status for _, status in results] == [TIMED_OUT]  # outlier detection sees it
    assert runtime.breaker.requests == 0


async def test_the_requests_own_deadline_stays_a_route_timeout() -> None:
    pool = SilentPool()
    runtime, results = cluster(pool)
    req = request(runtime, try_in=INF, deadline_in=0.05)
    loop = asyncio.get_running_loop()
    with pytest.raises(UpstreamTimeout) as caught:
        await endpoint_service(loop.time)(req)
    assert not isinstance(caught.value, PerTryTimeout)  # not retried as a try's timeout
    assert pool.deadlines == [req.deadline]
    assert [status for _, status in results] == [TIMED_OUT]


async def test_a_try_that_got_no_answer_counts_against_its_endpoint() -> None:
    runtime, results = cluster(AnsweringPool())
    req = request(runtime, try_in=0.05, deadline_in=30.0)
    with pytest.raises(PerTryTimeout):
        await endpoint_service(asyncio.get_running_loop().time)(req)
    assert [status for _, status in results] == [TIMED_OUT]
    assert runtime.breaker.requests == 0
