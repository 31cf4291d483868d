"""The innermost service: send a request to one endpoint of its cluster.

Picks the endpoint with the cluster's balancer (avoiding endpoints this request already
tried and ejected ones), takes a pooled connection, and sends. In-flight counts
(least-request) cover the whole exchange, until the response body ends; for peak-EWMA
clusters the time from sending to the response head feeds the RTT estimate; failures
and successes feed outlier detection. A pooled connection that turns out to be dead
(the peer closed it while idle) is retried once on a fresh connection when the request
is idempotent and its body replayable, without counting as a retry. An HTTP/2 stream
the upstream refused (REFUSED_STREAM, or left unstarted by a GOAWAY) goes once to
another endpoint, whatever the method: it was not processed.
"""

from __future__ import annotations

from collections.abc import Callable

from gossamer.errors import UpstreamConnectError
from gossamer.proxy.balancer import Host, observe_rtt
from gossamer.proxy.cluster import GATEWAY_ERRORS, ClusterRuntime
from gossamer.proxy.config import IDEMPOTENT_METHODS
from gossamer.proxy.h2.client import StreamRefused
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


def endpoint_service(clock: Clock) -> Service:
    async def call(req: Request) -> Response:
        cluster: ClusterRuntime = req.cluster
        host = cluster.choose(req.headers, req.tried)
        if host is None:
            raise NoHealthyUpstream(f"{cluster.config.name} has no healthy endpoint")
        req.tried.append(host)
        pool = cluster.pools[host.endpoint.key]
        done = _InFlight(host)
        try:
            resp: Response
            conn, reused = await pool.acquire(req.deadline)
            start = clock() if cluster.measure_rtt else 0.0
            try:
                resp = await conn.send(req, done)
            except StreamRefused:
                # HTTP/2: the upstream refused the stream or is going away (GOAWAY):
                # nothing was processed, so once more on another endpoint
                body = req.body
                if body is not None and not body.replayable:
                    raise
                done()
                other = cluster.choose(req.headers, req.tried)
                if other is None:
                    raise
                host = other
                req.tried.append(host)
                pool = cluster.pools[host.endpoint.key]
                done = _InFlight(host)
                conn, reused = await pool.acquire(req.deadline)
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
                done = _InFlight(host)
                conn = await pool.fresh(req.deadline)
                resp = await conn.send(req, done)
        except (UpstreamConnectError, UpstreamReset):
            done()
            cluster.failed(host)
            raise
        except BaseException:
            done()
            raise
        if start:
            now = clock()
            observe_rtt(host, now - start, now)
        if resp.status in GATEWAY_ERRORS:
            cluster.failed(host)
        elif host.failures:
            cluster.succeeded(host)
        return resp

    return call
