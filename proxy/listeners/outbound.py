"""The outbound side: the app's connections to the sidecar, routed to mesh services.

Connection dispatch (per accepted connection):
- explicit mode, or a connection made straight to the outbound port: HTTP/1.1, or
  HTTP/2 when the app opens with the h2c preface (prior knowledge; gRPC clients do),
  each stream routed by its :authority as HTTP/1.1 requests are by Host; requests
  name their target as an HTTP proxy would (`GET http://catalog:8080/x`, `CONNECT
  catalog:5432`) or with a `Host` header naming a mesh service.
- transparent mode: `SO_ORIGINAL_DST` gives the address the app dialled. If it is an
  endpoint of a mesh cluster on the cluster's port: HTTP clusters (http, http2, grpc)
  are parsed as HTTP/1.1 or HTTP/2 (preface) and routed by Host/:authority (falling
  back to that cluster), TCP clusters are relayed over mTLS to an endpoint the
  balancer picks. An address that an endpoint only claims (an alias: the control plane
  could not verify it) is pinned instead (`Snapshot.pinned`, `upstream/pinned.py`):
  that address alone, which must present the cluster's identity. Any other destination
  passes through unchanged as plain TCP (iptables excludes the proxy's own UID, so
  that does not loop).

Request path: telemetry -> errors -> route (virtual host, route, weighted cluster; adds
`x-request-id` and `x-forwarded-proto`) -> timeout -> retry -> endpoint. Requests for
hosts outside the mesh in absolute form (and CONNECT) are forwarded directly when the
listener allows passthrough; a `Host` that matches nothing is 404 `no-route`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import os
import random
from collections.abc import Awaitable, Callable
from typing import Any

from gossamer.errors import UpstreamConnectError
from gossamer.proxy.config import (
    Cluster,
    Endpoint,
    ListenerMode,
    OutlierDetection,
    Protocol,
    StreamTimeouts,
)
from gossamer.proxy.listeners.tcp import Pending, splice_pending
from gossamer.proxy.listeners.transparent import original_dst
from gossamer.proxy.routing.layers import RetryLayer, errors_layer, timeout_layer
from gossamer.proxy.routing.router import pick_cluster
from gossamer.proxy.service import (
    NoCluster,
    NoConfig,
    NoHealthyUpstream,
    NoRoute,
    Request,
    Response,
    Tunnel,
    compose,
)
from gossamer.proxy.telemetry.attempts import attempt_layer
from gossamer.proxy.telemetry.layers import outbound_telemetry
from gossamer.proxy.telemetry.metrics import TcpSeries
from gossamer.proxy.telemetry.wiring import Telemetry
from gossamer.proxy.transport.h2.server import H2Server
from gossamer.proxy.transport.http1.conns import ConnectionInfo, ConnectionTracker
from gossamer.proxy.transport.http1.server import Http1Server, ServerLimits
from gossamer.proxy.transport.pool import EndpointPool, open_plain
from gossamer.proxy.transport.tls_contexts import CredentialHolder
from gossamer.proxy.upstream.balancer import Host, RoundRobin
from gossamer.proxy.upstream.cluster import Snapshot
from gossamer.proxy.upstream.dispatch import endpoint_service
from gossamer.proxy.upstream.outlier import LOCAL_FAILURE
from gossamer.proxy.upstream.runtime import ClusterRuntime

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]", "0.0.0.0"})


def _split_authority(authority: str, default_port: int) -> tuple[str, int]:
    host, sep, port = authority.rpartition(":")
    if sep and port.isdigit() and "]" not in port:
        return host.strip("[]"), int(port)
    return authority.strip("[]"), default_port


_ID_PREFIX = os.urandom(8).hex().encode()
_ids = itertools.count(1)


def _request_id() -> bytes:
    """Unique per request: a random per-process prefix and a counter (cheap)."""
    return b"%s-%x" % (_ID_PREFIX, next(_ids))


def stream_timeouts(req: Request) -> StreamTimeouts | None:
    """The outbound listener's stream timeouts, as the request's snapshot has them."""
    snap = req.snapshot
    return snap.config.listeners.stream_timeouts if snap is not None else None


class Outbound:
    def __init__(
        self,
        snapshot: Callable[[], Snapshot | None],
        *,
        credentials: CredentialHolder,
        telemetry: Telemetry,
        tracker: ConnectionTracker,
        limits: ServerLimits,
        local_service: str,
        trust_domain: str = "gossamer.local",
        own_ports: frozenset[int],
        rng: random.Random,
        clock: Callable[[], float],
        request_telemetry: bool = True,
        hold: float = 0.0,
        configured: asyncio.Event | None = None,
    ) -> None:
        self.snapshot = snapshot
        self.hold = hold  # seconds a request waits for the first configuration
        self.configured = configured
        self.credentials = credentials
        self.metrics = metrics = telemetry.metrics
        self.tracker = tracker
        self.limits = limits
        self.local_service = local_service
        self.trust_domain = trust_domain
        self.own_ports = own_ports
        self.rng = rng
        self.clock = clock
        self.retry = RetryLayer(metrics, rng=rng, clock=clock)
        self._chain = compose(endpoint_service(clock), timeout_layer, self.retry, attempt_layer)
        # the telemetry layer also makes the error responses (one coroutine for both)
        outer = (
            outbound_telemetry(telemetry, local_service, self._own_identity)
            if request_telemetry
            else errors_layer
        )
        self.service = compose(self._route, outer)
        self._endpoint = endpoint_service(clock)
        self._passthrough: dict[tuple[str, int], ClusterRuntime] = {}
        # opens a connection to a cluster's endpoint as its traffic does (the sidecar
        # sets the cluster manager's; this default covers plaintext clusters)
        self.open_endpoint: Callable[
            [Cluster, Endpoint, asyncio.BaseProtocol, float], Awaitable[Any]
        ] = _open_plain_endpoint
        self._tasks: set[asyncio.Task[None]] = set()

    def _own_identity(self) -> str | None:
        contexts = self.credentials.contexts
        return contexts.spiffe_id if contexts is not None else None

    # -- connections ---------------------------------------------------------------
    def protocol(self) -> asyncio.Protocol:
        return _Dispatch(self)

    def dispatch(self, transport: Any) -> None:
        self.metrics.connection("outbound")
        peer = transport.get_extra_info("peername")
        info = ConnectionInfo("outbound", peer[0] if peer else "")
        snap = self.snapshot()
        if snap is not None and snap.config.listeners.mode is ListenerMode.TRANSPARENT:
            dst = original_dst(transport.get_extra_info("socket"))
            here = transport.get_extra_info("sockname")
            if dst is not None and (here is None or dst != tuple(here[:2])):
                info.original_dst = dst
                name = snap.destinations.get(dst)
                cluster = snap.clusters.get(name) if name is not None else snap.pinned.get(dst)
                if cluster is None:
                    if snap.config.listeners.passthrough:
                        self._spawn(self._tcp_passthrough(transport, self._hold(transport), dst))
                    else:
                        transport.close()
                    return
                if cluster.config.protocol is Protocol.TCP:
                    self._spawn(self._tcp_to_cluster(transport, self._hold(transport), cluster))
                    return
        server = Http1Server(self.service, info, self.tracker, self.limits)
        server.stream_timeouts = stream_timeouts
        server.on_stream_timeout = self.metrics.stream_timeout
        server.h2_handover = functools.partial(self._to_h2, info)
        transport.set_protocol(server)
        server.connection_made(transport)

    def _to_h2(self, info: ConnectionInfo, transport: Any, received: bytes) -> None:
        """The app opened with the HTTP/2 preface (h2c, prior knowledge)."""
        server = H2Server(
            self.service, info, self.tracker, self.limits, on_abuse=self.metrics.h2_abuse_closed
        )
        server.stream_timeouts = stream_timeouts
        server.on_stream_timeout = self.metrics.stream_timeout
        transport.set_protocol(server)
        server.connection_made(transport)
        server.data_received(received)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- HTTP requests -------------------------------------------------------------
    async def _held(self, req: Request) -> Response:
        """Before the first configuration: wait for it, at most `hold` seconds."""
        assert self.configured is not None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.hold):
                await self.configured.wait()
        if self.snapshot() is None:
            raise NoConfig(
                f"the sidecar has no configuration yet (waited {self.hold:g} s for the "
                "control plane; see its /ready)"
            )
        return await self._route(req)

    def _route(self, req: Request) -> Awaitable[Response]:
        """Pick the route and cluster; return the awaitable of the rest of the path."""
        snap = self.snapshot()
        if snap is None:
            if self.hold > 0 and self.configured is not None:
                return self._held(req)
            raise NoConfig("the sidecar has no configuration yet")
        req.snapshot = snap
        match = snap.router.match(req.authority, req.path)
        cluster: ClusterRuntime | None
        if match is not None:
            route = match[1]
            name = pick_cluster(route, self.rng)
            cluster = snap.clusters.get(name)
            if cluster is None:
                raise NoCluster(f"route {route.name!r} names cluster {name!r}, which is not known")
            req.route = route
        else:
            dst = req.conn.original_dst if req.conn is not None else None
            cluster = None
            if dst is not None:
                dst_name = snap.destinations.get(dst)
                cluster = (
                    snap.clusters.get(dst_name) if dst_name is not None else snap.pinned.get(dst)
                )
            if cluster is None:
                if snap.config.listeners.passthrough and (
                    req.method == "CONNECT" or req.conn.original_dst is not None or req.proxy_form
                ):
                    return self._http_passthrough(req)
                raise NoRoute(f"no route for {req.authority or 'a request without Host'}")
        req.cluster = cluster
        if req.method == "CONNECT":
            return self._connect(req, cluster)
        if not req.request_id:
            req.headers.append((b"x-request-id", _request_id()))
        return self._chain(req)

    def _target(self, req: Request) -> tuple[str, int]:
        dst: tuple[str, int] | None = req.conn.original_dst if req.conn is not None else None
        if dst is not None and req.method != "CONNECT" and not req.proxy_form:
            return dst
        host, port = _split_authority(req.authority, 443 if req.method == "CONNECT" else 80)
        if not host or (host in LOCAL_HOSTS and port in self.own_ports):
            raise NoRoute(f"no route for {req.authority or 'a request without Host'}")
        return host, port

    async def _http_passthrough(self, req: Request) -> Response:
        host, port = self._target(req)
        if req.method == "CONNECT":
            return await self._tunnel(lambda p: open_plain(host, port, p, 5.0))
        cluster = self._passthrough.get((host, port))
        if cluster is None:
            if len(self._passthrough) > 256:
                for old in self._passthrough.values():
                    for pool in old.pools.values():
                        pool.close()
                self._passthrough.clear()
            cluster = self._passthrough_cluster(host, port)
            self._passthrough[(host, port)] = cluster
        req.cluster = cluster
        return await self._endpoint(req)

    def _passthrough_cluster(self, host: str, port: int) -> ClusterRuntime:
        """A one-endpoint plaintext cluster for a destination outside the mesh."""
        endpoint = Endpoint(host, port)
        pool = EndpointPool(
            lambda conn, allowed: open_plain(host, port, conn, min(5.0, allowed)),
            max_idle=8,
            clock=self.clock,
        )
        config = Cluster(
            "PassthroughCluster", "PassthroughCluster", port, tls=False,
            outlier=OutlierDetection(consecutive_failures=0),
        )  # fmt: skip
        hosts = [Host(endpoint)]
        balancer = RoundRobin(hosts, self.rng, self.clock)
        return ClusterRuntime(config, hosts, balancer, {endpoint.key: pool}, self.clock)

    # -- tunnels and TCP ----------------------------------------------------------------
    def _cluster_connector(
        self, cluster: ClusterRuntime
    ) -> tuple[Callable[[asyncio.BaseProtocol], Any], bool, Callable[[], None]]:
        """How to connect to an endpoint the balancer picks, whether it is mTLS, and
        the release of its unit of the cluster's max_connections, taken now (Overflow
        when none is left: a relay cannot wait as a pending request) and given back
        by the caller when the connection ends (or here, if connecting fails).
        Connect failures and successes feed outlier detection."""
        host = cluster.choose([], [])
        if host is None:
            raise NoHealthyUpstream(f"{cluster.config.name} has no healthy endpoint")
        ep, cfg = host.endpoint, cluster.config
        tls = cfg.tls and ep.tls
        if tls and self.credentials.contexts is None:
            raise UpstreamConnectError("no certificate yet")
        breaker = cluster.breaker
        if not breaker.try_acquire_connection():
            raise breaker.connection_refused()
        release = _Once(breaker.release_connection)
        manager_open = self.open_endpoint

        async def connect(protocol: asyncio.BaseProtocol) -> Any:
            try:
                transport = await manager_open(cfg, ep, protocol, cfg.connect_timeout)
            except UpstreamConnectError:
                release()
                cluster.result(host, LOCAL_FAILURE)
                raise
            except BaseException:
                release()
                raise
            cluster.result(host, 200)
            return transport

        return connect, tls, release

    async def _tunnel(self, connect: Callable[[asyncio.BaseProtocol], Any]) -> Response:
        pending = Pending()
        transport = await connect(pending)
        tunnel = Tunnel(transport, b"", transport.close)
        # bytes that arrive before the splice stay in `pending`; splice_pending takes them
        tunnel.pending = bytes(pending.data)
        pending.data = bytearray()
        transport.set_protocol(_TunnelFeed(tunnel, pending))
        return Response(200, [], None, tunnel=tunnel)

    async def _connect(self, req: Request, cluster: ClusterRuntime) -> Response:
        connect, _, release = self._cluster_connector(cluster)
        release()  # a CONNECT tunnel is counted as a request, not as a held connection
        return await self._tunnel(connect)

    @staticmethod
    def _hold(transport: Any) -> Pending:
        """Keep what the app sends (now, before any await) until the relay is set up."""
        down = Pending()
        transport.set_protocol(down)
        down.connection_made(transport)
        return down

    async def _relay(
        self,
        transport: Any,
        down: Pending,
        connect: Callable[[asyncio.BaseProtocol], Any],
        series: TcpSeries,
        release: Callable[[], None] | None = None,
    ) -> None:
        up = Pending()
        try:
            upstream = await connect(up)
        except Exception:
            transport.abort()
            return
        series.opened()
        on_close = series.closed
        if release is not None:

            def on_close(sent: int = 0, received: int = 0) -> None:
                release()
                series.closed(sent, received)

        splice_pending(transport, down, upstream, up, on_close)

    async def _tcp_passthrough(self, transport: Any, down: Pending, dst: tuple[str, int]) -> None:
        series = self.metrics.tcp("source", self.local_service, "PassthroughCluster", "none")
        await self._relay(transport, down, lambda p: open_plain(dst[0], dst[1], p, 5.0), series)

    async def _tcp_to_cluster(self, transport: Any, down: Pending, cluster: ClusterRuntime) -> None:
        try:
            connect, tls, release = self._cluster_connector(cluster)
        except Exception:
            transport.abort()
            return
        contexts = self.credentials.contexts
        series = self.metrics.tcp(
            "source",
            self.local_service,
            cluster.service_label,
            "mutual_tls" if tls else "none",
            contexts.spiffe_id if contexts is not None else "",
            (cluster.config.identity or "") if tls else "",
        )
        try:
            await self._relay(transport, down, connect, series, release)
        finally:
            if transport.is_closing():
                release()

    async def close(self) -> None:
        for cluster in self._passthrough.values():
            for pool in cluster.pools.values():
                pool.close()
        for task in list(self._tasks):
            task.cancel()


async def _open_plain_endpoint(
    cluster: Cluster, endpoint: Endpoint, protocol: asyncio.BaseProtocol, limit: float
) -> Any:
    if cluster.tls and endpoint.tls:
        raise UpstreamConnectError("no way to open mTLS connections")
    return await open_plain(endpoint.address, endpoint.port, protocol, limit)


class _Once:
    """A callback that runs at most once."""

    __slots__ = ("callback",)

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback: Callable[[], None] | None = callback

    def __call__(self) -> None:
        callback, self.callback = self.callback, None
        if callback is not None:
            callback()


class _TunnelFeed(asyncio.Protocol):
    """Until the splice: keep what the upstream of a tunnel sends in `tunnel.pending`."""

    def __init__(self, tunnel: Tunnel, pending: Pending) -> None:
        self.tunnel = tunnel
        self.pending = pending

    def data_received(self, data: bytes) -> None:
        self.tunnel.pending += data

    def eof_received(self) -> bool:
        self.tunnel.eof = True
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.tunnel.eof = True


class _Dispatch(asyncio.Protocol):
    def __init__(self, outbound: Outbound) -> None:
        self.outbound = outbound

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.outbound.dispatch(transport)
