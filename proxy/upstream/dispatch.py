"""The innermost service: send a request to one endpoint of its cluster.

Picks the endpoint with the cluster's balancer (avoiding endpoints this request already
tried and ejected ones), takes a pooled connection, and sends. In-flight counts
(least-request) cover the whole exchange, until the response body ends; for peak-EWMA
clusters the time from sending to the response head feeds the RTT estimate; failures
and successes feed outlier detection. Each try is an active request of the cluster's
circuit breaker (max_requests) for the same span; over the limit the request is
answered at once with 503 `overflow`. A pooled connection that turns out to be dead
(the peer closed it while idle) is retried once on a fresh connection when the request
is idempotent and its body replayable, without counting as a retry. An HTTP/2 stream
the upstream refused (REFUSED_STREAM, or left unstarted by a GOAWAY) goes once to
another endpoint, whatever the method: it was not processed. So does a request the
peer sidecar answered with 502 `connect-failure` or 503 `app-not-ready` (its app
refused the connection or is not ready: the app never saw it); the retry layer counts
such an answer as a connect failure for further retries under the budget.

Deadlines: a try's connection is acquired (and opened) within the per-try timeout as
well as the request's, so a try to an endpoint that stopped answering SYNs (a host
gone from the network) ends at the per-try timeout, as a `PerTryTimeout` the retry
layer may retry elsewhere, instead of waiting for the cluster's connect timeout. A try
that timed out counts against its endpoint for outlier detection as a 504 (Envoy's
locally originated timeout), so a vanished endpoint is ejected after
`consecutive_gateway_errors` (or `consecutive_5xx`) of them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from gossamer.errors import UpstreamConnectError, UpstreamTimeout
from gossamer.proxy.config import IDEMPOTENT_METHODS
from gossamer.proxy.service import (
    NoHealthyUpstream,
    Overflow,
    PerTryTimeout,
    Request,
    Response,
    Service,
    UpstreamReset,
)
from gossamer.proxy.telemetry.attempts import note_connection
from gossamer.proxy.transport.h2.client import StreamRefused
from gossamer.proxy.upstream.balancer import Host, observe_rtt
from gossamer.proxy.upstream.breaker import CircuitBreaker
from gossamer.proxy.upstream.outlier import LOCAL_FAILURE
from gossamer.proxy.upstream.runtime import ClusterRuntime

Clock = Callable[[], float]
TIMED_OUT = 504  # a try that timed out, for outlier detection (Envoy's LocalOriginTimeout)


def _try_deadline(req: Request) -> float:
    """When this try's connection must be ready: the earlier of the try's deadline (the
    per-try timeout) and the request's."""
    return req.try_deadline if req.try_deadline < req.deadline else req.deadline


@contextlib.contextmanager
def _connecting(req: Request) -> Iterator[float]:
    """Around acquiring a try's connection by `_try_deadline`: running out of the try's
    time is a PerTryTimeout, which the retry layer may retry on another endpoint."""
    deadline = _try_deadline(req)
    try:
        yield deadline
    except UpstreamTimeout as exc:
        if deadline < req.deadline and not isinstance(exc, PerTryTimeout):
            raise PerTryTimeout(f"no connection within the per-try timeout ({exc})") from None
        raise


class _InFlight:
    """Counts one exchange on a host (and in its cluster's breaker) from its start
    until its end (once)."""

    __slots__ = ("breaker", "ended", "host")

    def __init__(self, host: Host, breaker: CircuitBreaker) -> None:
        self.host = host
        self.breaker = breaker
        self.ended = False
        host.active += 1
        host.total += 1
        breaker.requests += 1

    def __call__(self) -> None:
        if not self.ended:
            self.ended = True
            self.host.active -= 1
            self.breaker.requests -= 1


def endpoint_service(clock: Clock) -> Service:
    async def call(req: Request) -> Response:
        cluster: ClusterRuntime = req.cluster
        host = cluster.choose(req.headers, req.tried)
        if host is None:
            raise NoHealthyUpstream(f"{cluster.config.name} has no healthy endpoint")
        breaker = cluster.breaker
        limit = breaker.limits.max_requests
        if limit is not None and breaker.requests >= limit:
            breaker.try_acquire_request()  # counts the overflow
            raise Overflow(f"{cluster.config.name}: max_requests ({limit}) reached")
        req.tried.append(host)
        pool = cluster.pools[host.endpoint.key]
        done = _InFlight(host, breaker)
        try:
            resp: Response
            asked = clock() if req.attempt is not None else 0.0
            with _connecting(req) as deadline:
                conn, reused = await pool.acquire(deadline)
            if asked:  # a sampled try: how its connection was got (telemetry/attempts.py)
                note_connection(req, reused, clock() - asked, conn)
            start = clock() if cluster.measure_rtt else 0.0
            try:
                resp = await conn.send(req, done)
            except StreamRefused:
                # HTTP/2: the upstream refused the stream or is going away (GOAWAY):
                # nothing was processed, so once more on another endpoint
                other = _another(req, cluster)
                if other is None:
                    raise
                done()
                host, done = other, _InFlight(other, breaker)
                with _connecting(req) as deadline:
                    conn, reused = await cluster.pools[host.endpoint.key].acquire(deadline)
                resp = await conn.send(req, done)
            except UpstreamReset:
                body = req.body
                if (
                    not reused
                    or req.method not in IDEMPOTENT_METHODS
                    or (body is not None and not body.replayable)
                ):
                    raise
                done()  # the pooled connection was dead: once more on a fresh one
                done = _InFlight(host, breaker)
                with _connecting(req) as deadline:
                    conn = await pool.fresh(deadline)
                resp = await conn.send(req, done)
        except (UpstreamConnectError, UpstreamReset):
            done()
            cluster.result(host, LOCAL_FAILURE)
            raise
        except UpstreamTimeout:
            done()
            cluster.result(host, TIMED_OUT)
            raise
        except BaseException:
            done()
            raise
        if resp.status in NOT_PROCESSED_STATUS and never_reached_app(resp, host, cluster):
            # the peer sidecar proves its app never saw the request (refused, not ready):
            # once more on another endpoint, whatever the method
            other = _another(req, cluster)
            if other is not None:
                cluster.result(host, resp.status)
                resp.discard()
                done()
                host, done, start = other, _InFlight(other, breaker), 0.0
                resp = await _send_once(req, cluster, host, done)
        if start:
            now = clock()
            observe_rtt(host, now - start, now)
        cluster.result(host, resp.status)
        return resp

    return call


NOT_PROCESSED_STATUS = frozenset({502, 503})
NOT_PROCESSED_ERRORS = frozenset({b"connect-failure", b"app-not-ready"})
GOSSAMER_ERROR = b"x-gossamer-error"


def never_reached_app(resp: Response, host: Host, cluster: ClusterRuntime) -> bool:
    """A 502/503 that a peer sidecar made because its app refused the connection or was
    not ready: the request never reached an app. Only a sidecar's word counts (mutual
    TLS to an endpoint with a sidecar); the callee's inbound side removes the header
    from its app's own 502/503 answers (`strip_gossamer_error`)."""
    if not (cluster.config.tls and host.endpoint.tls):
        return False
    for name, value in resp.headers:
        if name == GOSSAMER_ERROR:
            return value in NOT_PROCESSED_ERRORS
    return False


def strip_gossamer_error(resp: Response) -> Response:
    """An app's own 502/503 loses any `x-gossamer-error` (it is the sidecars' word)."""
    if resp.status in NOT_PROCESSED_STATUS:
        resp.headers = [(k, v) for k, v in resp.headers if k.lower() != GOSSAMER_ERROR]
    return resp


async def _send_once(
    req: Request, cluster: ClusterRuntime, host: Host, done: _InFlight
) -> Response:
    """One exchange with `host` on a pooled connection; a failure to connect or a reset
    counts against the host (outlier detection)."""
    try:
        with _connecting(req) as deadline:
            conn, _ = await cluster.pools[host.endpoint.key].acquire(deadline)
        return await conn.send(req, done)
    except (UpstreamConnectError, UpstreamReset):
        done()
        cluster.result(host, LOCAL_FAILURE)
        raise
    except UpstreamTimeout:
        done()
        cluster.result(host, TIMED_OUT)
        raise
    except BaseException:
        done()
        raise


def _another(req: Request, cluster: ClusterRuntime) -> Host | None:
    """An endpoint this request has not tried, when its body can be sent again."""
    body = req.body
    if body is not None and not body.replayable:
        return None
    other = cluster.choose(req.headers, req.tried)
    if other is not None:
        req.tried.append(other)
    return other
