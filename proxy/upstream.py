"""The innermost service: send a request to one endpoint of its cluster.

Picks the endpoint with the cluster's balancer (avoiding endpoints this request already
tried), takes a pooled connection, and sends. In-flight counts (least-request) cover the
whole exchange, until the response body ends; the time to the response head feeds the
peak-EWMA estimate; failures and successes feed outlier detection. A pooled connection that turns out to be dead (the peer closed it
while idle) is retried once on a fresh connection when the request is idempotent and
its body replayable, without counting as a retry.
"""

from __future__ import annotations

from collections.abc import Callable

from gossamer.errors import UpstreamConnectError
from gossamer.proxy.balancer import Host, observe_rtt
from gossamer.proxy.config import IDEMPOTENT_METHODS
from gossamer.proxy.outlier import GATEWAY_ERRORS
from gossamer.proxy.pool import EndpointPool
from gossamer.proxy.service import NoHealthyUpstream, Request, Response, Service, UpstreamReset

Clock = Callable[[], float]


class _InFlight:
    """Counts one exchange on a host from its start until its end (once)."""

    __slots__ = ("ended", "host")

    def __init__(self, host: Host) -> None:
        self.host = host
        self.ended = False
        host.active += 1
        host.total += 1

    def __call__(self) -> None:
        if not self.ended:
            self.ended = True
            self.host.active -= 1


async def _exchange(
    pool: EndpointPool, host: Host, req: Request, clock: Clock | None = None
) -> Response:
    """One try on `host`; its RTT (from sending to the response head, not counting
    connection set-up) feeds the host's peak-EWMA estimate when `clock` is given."""
    done = _InFlight(host)
    try:
        conn, reused = await pool.acquire(req.deadline)
        try:
            if clock is None:
                return await conn.send(req, done)
            start = clock()
            resp = await conn.send(req, done)
            now = clock()
            observe_rtt(host, now - start, now)
            return resp
        except UpstreamReset:
            body = req.body
            if not reused or req.method not in IDEMPOTENT_METHODS:
                raise
            if body is not None and not body.replayable:
                raise
        done()
        done = _InFlight(host)
        conn = await pool.fresh(req.deadline)
        return await conn.send(req, done)
    except BaseException:
        done()
        raise


def endpoint_service(clock: Clock) -> Service:
    async def call(req: Request) -> Response:
        cluster = req.cluster
        host = cluster.choose(req.headers, req.tried)
        if host is None:
            raise NoHealthyUpstream(f"{cluster.config.name} has no healthy endpoint")
        req.tried.append(host)
        try:
            resp = await _exchange(cluster.pool(host), host, req, clock)
        except (UpstreamConnectError, UpstreamReset):
            cluster.failed(host)
            raise
        if resp.status in GATEWAY_ERRORS:
            cluster.failed(host)
        else:
            cluster.succeeded(host)
        return resp

    return call
