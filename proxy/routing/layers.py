"""Layers of the data path (docs/architecture.md, "The request path"): errors, timeout,
retry, authz (the telemetry layers are in telemetry/layers.py).

Each is a `Layer` (a function from a service to a service) reading its settings from
the request: `request.route` (timeout, retry policy), `request.snapshot` (the
authorization of the inbound listener), `request.conn` (peer identity).

Layers that act only before the inner service (timeout, authz, retry without a policy)
are plain functions returning the inner awaitable, so they add no coroutine frame to
the request's path; a synchronous raise is caught by `errors_layer` like any other.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

from gossamer.errors import (
    AuthorizationDenied,
    GossamerError,
    UpstreamConnectError,
)
from gossamer.proxy.config import RetryPolicy, Route
from gossamer.proxy.service import (
    PerTryTimeout,
    Request,
    Response,
    Service,
    UpstreamReset,
    error_response,
)
from gossamer.proxy.telemetry import semconv as sc
from gossamer.proxy.telemetry.attempts import note, note_resend
from gossamer.proxy.telemetry.metrics import SidecarMetrics
from gossamer.proxy.transport.http1.body import BodyStream
from gossamer.proxy.upstream.breaker import CircuitBreaker
from gossamer.proxy.upstream.dispatch import NOT_PROCESSED_STATUS, never_reached_app
from gossamer.proxy.upstream.retry import (
    Failure,
    RetryBudget,
    backoff_delay,
    grpc_retryable,
    retry_allowed,
)

Clock = Callable[[], float]


def errors_layer(inner: Service) -> Service:
    """Turn data-path failures into generated responses (x-gossamer-error)."""

    async def call(req: Request) -> Response:
        try:
            return await inner(req)
        except GossamerError as exc:
            return error_response(exc)

    return call


def timeout_layer(inner: Service) -> Service:
    """The route's timeout, until the response head (all tries and backoffs included).

    Sets `request.deadline`; the upstream exchange enforces it with a timer (cheaper
    than a timeout scope per request) and fails with UpstreamTimeout.
    """

    loop: asyncio.AbstractEventLoop | None = None

    def call(req: Request) -> Awaitable[Response]:
        nonlocal loop
        route = req.route
        timeout = route.timeout if route is not None else None
        if timeout:
            if loop is None:
                loop = asyncio.get_running_loop()
            # (a gRPC call's own deadline may be earlier)
            req.deadline = min(req.deadline, loop.time() + timeout)
        return inner(req)

    return call


def authz_layer(inner: Service) -> Service:
    """Inbound: the peer's SPIFFE ID must be allowed by the current authorization."""

    def call(req: Request) -> Awaitable[Response]:
        peer = req.conn.peer_identity if req.conn is not None else None
        if not req.snapshot.inbound.authorization.allows(peer):
            raise AuthorizationDenied(f"{peer or 'an unidentified peer'} may not call this service")
        return inner(req)

    return call


class RetryLayer:
    """Retries per the route's policy, within a retry budget per route."""

    def __init__(
        self,
        metrics: SidecarMetrics,
        *,
        rng: random.Random,
        clock: Clock,
        sleep: Callable[[float], object] = asyncio.sleep,
    ) -> None:
        self.metrics = metrics
        self.rng = rng
        self.clock = clock
        self.sleep = sleep
        self.budgets: dict[tuple[str, float, float], RetryBudget] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def budget(self, name: str, policy: RetryPolicy) -> RetryBudget:
        key = (name, policy.budget_percent, policy.min_retries_per_second)
        budget = self.budgets.get(key)
        if budget is None:
            budget = RetryBudget(
                policy.budget_percent, policy.min_retries_per_second, clock=self.clock
            )
            self.budgets[key] = budget
        return budget

    def __call__(self, inner: Service) -> Service:
        def call(req: Request) -> Awaitable[Response]:
            route = req.route
            policy: RetryPolicy | None = route.retry if route is not None else None
            if policy is None or policy.attempts <= 1:
                return inner(req)
            return retrying(req, route, policy)

        async def retrying(req: Request, route: Route, policy: RetryPolicy) -> Response:
            held: list[CircuitBreaker] = []  # the cluster's max_retries unit, once taken
            try:
                return await attempts(req, route, policy, held)
            finally:
                if held:
                    held[0].release_retry()

        async def attempts(
            req: Request, route: Route, policy: RetryPolicy, held: list[CircuitBreaker]
        ) -> Response:
            budget = self.budget(route.name, policy)
            budget.record_request()
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            attempt = 1
            while True:
                resp: Response | None = None
                error: GossamerError | None = None
                failure: Failure | None = None
                if policy.per_try_timeout:
                    req.try_deadline = loop.time() + policy.per_try_timeout
                try:
                    resp = await inner(req)
                except PerTryTimeout as exc:
                    failure, error = Failure.TIMEOUT, exc
                except UpstreamConnectError as exc:
                    failure, error = Failure.CONNECT_FAILURE, exc
                except UpstreamReset as exc:
                    failure, error = Failure.RESET, exc
                replayable = req.body is None or req.body.replayable
                if (
                    resp is not None
                    and resp.status in NOT_PROCESSED_STATUS
                    and resp.error is None
                    and req.tried
                    and never_reached_app(resp, req.tried[-1], req.cluster)
                ):
                    # the peer sidecar proves its app never saw the request
                    failure = Failure.CONNECT_FAILURE
                grpc_retry = (
                    resp is not None
                    and req.grpc
                    and bool(policy.retry_grpc_statuses)
                    and grpc_retryable(resp, policy.retry_grpc_statuses, req.body)
                )
                if (
                    resp is not None
                    and failure is None
                    and resp.status not in policy.retry_status_codes
                    and not grpc_retry
                ):
                    if not _may_finish(resp, policy, req, attempt, replayable):
                        return resp
                    try:
                        # within this try's time: a body that stalls (its upstream
                        # vanished between head and body) is retried like a reset
                        await _finish_body(resp, min(req.deadline, req.try_deadline))
                        return resp
                    except (UpstreamReset, TimeoutError) as exc:
                        # the upstream broke before the (small) body was complete:
                        # nothing reached the client yet, so this try can be retried
                        resp.discard()
                        resp = None
                        failure = Failure.RESET
                        error = (
                            exc
                            if isinstance(exc, UpstreamReset)
                            else UpstreamReset("the response body stalled")
                        )
                if attempt >= policy.attempts or not (
                    grpc_retry
                    or retry_allowed(
                        policy,
                        req.method,
                        failure=failure,
                        status=resp.status if resp is not None else 0,
                        replayable=replayable,
                    )
                ):
                    return _give_up(resp, error)
                dst = req.cluster.service_label if req.cluster is not None else "unknown"
                if not budget.withdraw():
                    self.metrics.retry_budget_exhausted(dst)
                    note(req, sc.EVENT_BUDGET_EXHAUSTED, {"gossamer.route.name": route.name})
                    return _give_up(resp, error)
                if not held and req.cluster is not None:
                    # circuit breaker: one unit of max_retries while this request retries
                    breaker = req.cluster.breaker
                    if not breaker.try_acquire_retry():
                        note(req, sc.EVENT_BREAKER_REJECTED, {"gossamer.limit": "max_retries"})
                        return _give_up(resp, error)
                    held.append(breaker)
                self.metrics.retry(dst)
                if resp is not None:
                    resp.discard()
                delay = backoff_delay(policy, attempt, self.rng)
                if loop.time() + delay >= req.deadline:
                    note(req, sc.EVENT_GIVE_UP, {"gossamer.reason": "deadline"})
                    return _give_up(resp, error)
                if req.span is not None:
                    note_resend(req, _reason(failure, bool(grpc_retry), resp), delay)
                if delay > 0:
                    await self.sleep(delay)  # type: ignore[misc]
                attempt += 1

        return call


SMALL_BODY = 65536


def _may_finish(
    resp: Response, policy: RetryPolicy, req: Request, attempt: int, replayable: bool
) -> bool:
    """Whether to wait for a small response body before answering, so that a reset
    in the middle of it can still be retried (it usually is already complete)."""
    body = resp.body
    return (
        isinstance(body, BodyStream)
        and not body.done
        and resp.content_length is not None
        and resp.content_length <= SMALL_BODY
        and attempt < policy.attempts
        and retry_allowed(policy, req.method, failure=Failure.RESET, replayable=replayable)
    )


async def _finish_body(resp: Response, deadline: float) -> None:
    body = resp.body
    assert isinstance(body, BodyStream)
    parts = []
    async with asyncio.timeout_at(deadline if deadline != float("inf") else None):
        while data := await body.read():
            parts.append(data)
    resp.body = b"".join(parts)


def _reason(failure: Failure | None, grpc_retry: bool, resp: Response | None) -> str:
    """Why a try is resent: reset, connect-failure, timeout, its status, grpc-status."""
    if failure is not None:
        return failure.value
    if grpc_retry:
        return "grpc-status"
    return str(resp.status) if resp is not None else "error"


def _give_up(resp: Response | None, error: GossamerError | None) -> Response:
    if resp is not None:
        return resp
    assert error is not None
    raise error
