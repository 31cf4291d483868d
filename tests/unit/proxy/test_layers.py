"""Layers on scripted inner services: retry rules and budget, timeout, errors, authz."""

from __future__ import annotations

import asyncio
import random

from gossamer.errors import UpstreamConnectError
from gossamer.proxy.config import (
    Authorization,
    InboundConfig,
    NodeInfo,
    ProxyConfig,
    RetryPolicy,
    Route,
    WeightedCluster,
)
from gossamer.proxy.routing.layers import RetryLayer, authz_layer, errors_layer, timeout_layer
from gossamer.proxy.routing.router import Router
from gossamer.proxy.service import PerTryTimeout, Request, Response, UpstreamReset, compose
from gossamer.proxy.telemetry.metrics import SidecarMetrics as Metrics
from gossamer.proxy.transport.http1.body import BodyStream, RequestBody
from gossamer.proxy.transport.http1.conns import ConnectionInfo
from gossamer.proxy.upstream.cluster import Snapshot

FAST = RetryPolicy(backoff_base=0, backoff_max=0)


def request(
    method: str = "GET",
    retry: RetryPolicy | None = FAST,
    body=None,
) -> Request:
    req = Request(method, b"/", "svc", [], body)
    req.route = Route("r", (WeightedCluster("c"),), timeout=5.0, retry=retry)
    return req


class Script:
    """An inner service answering from a list: statuses or exceptions."""

    def __init__(self, *outcomes: object) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    async def __call__(self, req: Request) -> Response:
        self.calls += 1
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, BaseException):
            raise outcome
        assert isinstance(outcome, int)
        return Response(outcome, [], b"")


def retrying(inner: Script, metrics: Metrics | None = None) -> tuple[RetryLayer, object]:
    layer = RetryLayer(metrics or Metrics(), rng=random.Random(1), clock=lambda: 0.0)
    return layer, compose(inner, errors_layer, layer)


async def test_retries_until_success_then_stops():
    inner = Script(503, UpstreamConnectError("x"), UpstreamReset("y"), 200)
    _, svc = retrying(inner)
    req = request(retry=RetryPolicy(attempts=4, backoff_base=0, backoff_max=0))
    assert (await svc(req)).status == 200  # type: ignore[operator]
    assert inner.calls == 4


async def test_attempts_are_bounded_and_the_last_answer_is_returned():
    inner = Script(503)
    _, svc = retrying(inner)
    assert (await svc(request())).status == 503  # type: ignore[operator]
    assert inner.calls == 3


async def test_non_idempotent_not_retried_after_reset_but_after_connect_failure():
    inner = Script(UpstreamReset("boom"))
    _, svc = retrying(inner)
    resp = await svc(request("POST"))  # type: ignore[operator]
    assert resp.status == 502 and resp.error == b"upstream-reset" and inner.calls == 1
    inner = Script(UpstreamConnectError("refused"), 201)
    _, svc = retrying(inner)
    assert (await svc(request("POST"))).status == 201  # type: ignore[operator]


async def test_streamed_body_past_the_buffer_is_not_retried():
    stream = BodyStream()
    body = RequestBody(stream, limit=3)
    reader = body.reader()
    stream.feed(b"0123456789")
    await reader.read()
    inner = Script(503)
    _, svc = retrying(inner)
    await svc(request("PUT", body=body))  # type: ignore[operator]
    assert inner.calls == 1


async def test_per_try_timeouts_are_retried():
    inner = Script(PerTryTimeout("slow"), 200)
    _, svc = retrying(inner)
    req = request(retry=RetryPolicy(per_try_timeout=0.5, backoff_base=0, backoff_max=0))
    assert (await svc(req)).status == 200  # type: ignore[operator]
    assert req.try_deadline != float("inf")


async def test_budget_stops_a_storm():
    metrics = Metrics()
    inner = Script(503)
    _, svc = retrying(inner, metrics)
    policy = RetryPolicy(
        attempts=3, budget_percent=10, min_retries_per_second=0, backoff_base=0, backoff_max=0
    )
    for _ in range(200):
        await svc(request(retry=policy))  # type: ignore[operator]
    # 200 requests; without a budget there would be 400 retries
    retried = metrics.retries["unknown"]
    assert 15 <= retried <= 21
    assert inner.calls == 200 + retried
    assert metrics.budget_exhausted["unknown"] > 150


async def test_timeout_layer_sets_the_deadline():
    seen: list[float] = []

    async def inner(req: Request) -> Response:
        seen.append(req.deadline)
        return Response(200, [], b"")

    req = request()
    await timeout_layer(inner)(req)
    now = asyncio.get_running_loop().time()
    assert now < seen[0] <= now + 5.0


async def test_authz_layer_denies_before_the_inner_service():
    calls = []

    async def inner(req: Request) -> Response:
        calls.append(req)
        return Response(200, [], b"")

    cfg = ProxyConfig(
        node=NodeInfo("catalog"),
        inbound=InboundConfig(
            authorization=Authorization(False, frozenset({"spiffe://t/ns/default/sa/web"}))
        ),
    )
    snap = Snapshot(cfg, Router(cfg.routes), {}, {})
    svc = compose(inner, errors_layer, authz_layer)
    for peer, status in (
        ("spiffe://t/ns/default/sa/web", 200),
        ("spiffe://t/ns/default/sa/evil", 403),
        (None, 403),
    ):
        req = request()
        req.snapshot = snap
        req.conn = ConnectionInfo("inbound", peer_identity=peer)
        resp = await svc(req)
        assert resp.status == status
        if status == 403:
            assert resp.error == b"denied"
    assert len(calls) == 1


async def test_a_reset_inside_a_small_body_is_retried():
    calls = 0

    async def inner(req: Request) -> Response:
        nonlocal calls
        calls += 1
        stream = BodyStream()
        stream.feed(b"hal")
        loop = asyncio.get_running_loop()
        if calls == 1:  # the connection breaks after the head and 3 bytes
            loop.call_later(0.01, stream.fail, UpstreamReset("cut"))
        else:
            loop.call_later(0.01, stream.feed, b"f of it")
            loop.call_later(0.02, stream.finish)
        return Response(200, [], stream, content_length=10)

    layer = RetryLayer(Metrics(), rng=random.Random(1), clock=lambda: 0.0)
    resp = await compose(inner, errors_layer, layer)(request())
    assert calls == 2 and resp.status == 200 and resp.body == b"half of it"


async def test_a_small_body_that_stalls_is_retried_at_the_per_try_timeout():
    """The head arrived, then nothing (the upstream's host vanished): the try ends at
    the per-try timeout and the request goes once more, well before its own timeout."""
    calls = 0

    async def inner(req: Request) -> Response:
        nonlocal calls
        calls += 1
        stream = BodyStream()
        stream.feed(b"hal")
        if calls == 2:
            loop = asyncio.get_running_loop()
            loop.call_later(0.01, stream.feed, b"f of it")
            loop.call_later(0.02, stream.finish)
        return Response(200, [], stream, content_length=10)

    policy = RetryPolicy(backoff_base=0, backoff_max=0, per_try_timeout=0.05)
    layer = RetryLayer(Metrics(), rng=random.Random(1), clock=lambda: 0.0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    resp = await compose(inner, errors_layer, layer)(request(retry=policy))
    assert calls == 2 and resp.status == 200 and resp.body == b"half of it"
    assert loop.time() - started < 1.0  # the route's timeout is 5 s
