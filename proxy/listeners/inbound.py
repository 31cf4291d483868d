"""The inbound side: peers' mTLS connections, authorized, handed to the local app.

Per connection: the TLS 1.3 handshake requires a client certificate chaining to the
trust bundle (a plaintext client or a certificate from another CA never completes it),
and must finish within `handshake_timeout` of the accept. Until it has, the connection
is one the listener's connection limit may displace (`listeners/limits.py`).
The SNI names the target port (`tls.port_from_sni`), which selects the app port
(`inbound|<port>`; the first app port when there is no SNI).

- HTTP ports (http, http2, grpc): HTTP/2 when the peer negotiated ALPN `h2`, else
  HTTP/1.1. Every request passes the authz layer first: a peer whose SPIFFE ID the
  current authorization does not allow gets 403 `x-gossamer-error: denied` and the app
  sees nothing. Allowed requests go to the app on 127.0.0.1:<port> over pooled plain
  HTTP/1.1 (http2/grpc ports: multiplexed h2c, trailers and gRPC deadlines kept), with `x-forwarded-client-cert: By=<own ID>;URI=<peer ID>` (replacing any
  such header the peer sent) and the peer's address appended to `x-forwarded-for`.
  An app that refuses the connection before it has ever answered (not started yet) is
  tried again every 100 ms for up to `hold` seconds, then the peer gets 503
  `x-gossamer-error: app-not-ready` (retriable: the request never reached the app);
  once it has answered, a refused connection (the app died) fails fast with 502
  `connect-failure`, and the readiness probe takes the instance out of rotation.
  Each connection also counts in the connection series (`gossamer_tcp_connections_*`,
  opened at the handshake, closed when it ends) with the peer's and this sidecar's
  SPIFFE IDs as principals: where `gossamer edges` reads who called whom.
- TCP ports: a denied peer's connection is closed before anything is read from it or
  sent to the app; an allowed one is relayed to the app byte for byte (half-close
  respected).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from gossamer.errors import UpstreamConnectError
from gossamer.fdlimits import ConnectionLimit
from gossamer.proxy.config import Protocol, StreamTimeouts
from gossamer.proxy.listeners.tcp import Pending, splice_pending
from gossamer.proxy.routing.layers import authz_layer, errors_layer
from gossamer.proxy.service import (
    AppNotReady,
    NoCluster,
    NoConfig,
    Request,
    Response,
    Service,
    compose,
)
from gossamer.proxy.telemetry.layers import inbound_telemetry, peer_service
from gossamer.proxy.telemetry.metrics import TcpSeries
from gossamer.proxy.telemetry.wiring import Telemetry
from gossamer.proxy.transport.h2.server import H2Server
from gossamer.proxy.transport.http1.conns import ConnectionInfo, ConnectionTracker
from gossamer.proxy.transport.http1.server import Http1Server, ServerLimits
from gossamer.proxy.transport.pool import open_plain
from gossamer.proxy.transport.tls_contexts import (
    CredentialHolder,
    port_from_sni,
    spiffe_id_from_peercert,
)
from gossamer.proxy.transport.tls_transport import TlsLayer
from gossamer.proxy.upstream.cluster import Snapshot
from gossamer.proxy.upstream.dispatch import endpoint_service, strip_gossamer_error

APP_RETRY_INTERVAL = 0.1
XFCC = b"x-forwarded-client-cert"
XFF = b"x-forwarded-for"


def stream_timeouts(req: Request) -> StreamTimeouts | None:
    """The inbound listener's stream timeouts, as the request's snapshot has them."""
    snap = req.snapshot
    return snap.inbound.stream_timeouts if snap is not None else None


class Inbound:
    def __init__(
        self,
        snapshot: Callable[[], Snapshot | None],
        *,
        credentials: CredentialHolder,
        telemetry: Telemetry,
        tracker: ConnectionTracker,
        limits: ServerLimits,
        local_service: str,
        clock: Callable[[], float],
        handshake_timeout: float = 10.0,
        connection_limit: ConnectionLimit | None = None,
        request_telemetry: bool = True,
        hold: float = 0.0,
    ) -> None:
        self.snapshot = snapshot
        self.hold = hold  # seconds a request waits for the app to accept connections
        # ... until the app has answered once: later a refused connection means the app
        # died or restarts, which fails fast (502 connect-failure) as in Envoy
        self.app_seen = False
        self.credentials = credentials
        self.metrics = telemetry.metrics
        self.tracker = tracker
        self.limits = limits
        self.local_service = local_service
        self.handshake_timeout = handshake_timeout
        self.connection_limit = connection_limit  # a finished handshake is `proven`
        self._endpoint = endpoint_service(clock)
        # the telemetry layer also makes the error responses (one coroutine for both)
        outer = (
            inbound_telemetry(telemetry, local_service, self._own_identity)
            if request_telemetry
            else errors_layer
        )
        self.service = compose(self._forward, outer, self._capture, authz_layer)
        self._tasks: set[asyncio.Task[None]] = set()
        # open HTTP connections (by their TCP transport's id) -> their connection series
        self._http_connections: dict[int, TcpSeries] = {}
        self._count_connections = request_telemetry

    def protocol(self) -> asyncio.BaseProtocol:
        self.metrics.connection("inbound")
        contexts = self.credentials.contexts
        if contexts is None:
            return _Refuse()
        return TlsLayer(
            contexts.server,
            server_side=True,
            on_handshake=self._on_handshake,
            on_failure=self._on_failure,
            handshake_timeout=self.handshake_timeout,
            on_closed=self._on_closed,
        )

    def _on_closed(self, raw: asyncio.BaseTransport) -> None:
        if self.connection_limit is not None:
            self.connection_limit.closed(raw)
        series = self._http_connections.pop(id(raw), None)
        if series is not None:
            series.closed()

    def _own_identity(self) -> str | None:
        contexts = self.credentials.contexts
        return contexts.spiffe_id if contexts is not None else None

    def _on_failure(self, exc: BaseException) -> None:
        self.metrics.tls_failure("inbound")

    def _on_handshake(self, layer: TlsLayer) -> asyncio.BaseProtocol | None:
        if self.connection_limit is not None:
            self.connection_limit.proven(layer.raw_transport)
        self.credentials.track(layer)  # aborted if the peer's leaf gets revoked
        snap = self.snapshot()
        if snap is None:
            return None
        app_port = snap.inbound.app_port(port_from_sni(layer.sni))
        if app_port is None:
            return None
        peer = spiffe_id_from_peercert(layer.get_extra_info("peercert"))
        addr = layer.get_extra_info("peername")
        info = ConnectionInfo(
            "inbound",
            addr[0] if addr else "",
            peer_identity=peer,
            security="mutual_tls",
            app_port=app_port,
        )
        if app_port.protocol is not Protocol.TCP:
            raw = layer.raw_transport
            if self._count_connections and raw is not None:
                # an HTTP connection counts in the connection series too: its principals
                # are the handshake's (who called whom, for `gossamer edges`)
                series = self.metrics.tcp(
                    "destination", peer_service(peer), self.local_service, "mutual_tls",
                    peer or "", self._own_identity() or "",
                )  # fmt: skip
                series.opened()
                self._http_connections[id(raw)] = series
            if layer.get_extra_info("ssl_object").selected_alpn_protocol() == "h2":
                server: H2Server | Http1Server = H2Server(
                    self.service, info, self.tracker, self.limits,
                    on_abuse=self.metrics.h2_abuse_closed,
                )  # fmt: skip
            else:
                server = Http1Server(self.service, info, self.tracker, self.limits)
            server.stream_timeouts = stream_timeouts
            server.on_stream_timeout = self.metrics.stream_timeout
            return server
        source = peer_service(peer)
        if not snap.inbound.authorization.allows(peer):
            self.metrics.requests(
                "destination", source, self.local_service, "mutual_tls", app_port.cluster_name,
                "CONNECT",
            ).record(403, 0.0)  # fmt: skip
            return None
        pending = Pending()
        series = self.metrics.tcp(
            "destination", source, self.local_service, "mutual_tls", peer or "",
            self._own_identity() or "",
        )  # fmt: skip
        task = asyncio.get_running_loop().create_task(
            self._relay(layer, pending, app_port.address, app_port.local_port, series)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return pending

    async def _relay(
        self,
        layer: TlsLayer,
        down: Pending,
        address: str,
        port: int,
        series: TcpSeries,
    ) -> None:
        up = Pending()
        try:
            app = await open_plain(address, port, up, 5.0)
        except Exception:
            layer.abort()
            return
        series.opened()
        splice_pending(layer, down, app, up, series.closed)

    def _capture(self, inner: Service) -> Service:
        """Pin the configuration current when the request starts."""

        def call(req: Request) -> Awaitable[Response]:
            snap = self.snapshot()
            if snap is None:
                raise NoConfig("the sidecar has no configuration yet")
            req.snapshot = snap
            return inner(req)

        return call

    async def _forward(self, req: Request) -> Response:
        snap = req.snapshot
        conn = req.conn
        name = conn.app_port.cluster_name
        cluster = snap.clusters.get(name) if snap is not None else None
        if cluster is None:
            raise NoCluster(f"no cluster {name}")
        req.cluster = cluster
        xfcc = conn.xfcc
        if not xfcc:
            own = self.credentials.contexts.spiffe_id if self.credentials.contexts else ""
            xfcc = conn.xfcc = f"By={own};URI={conn.peer_identity or ''}".encode()
        forwarded = conn.client.encode()
        if req.forwarded:  # replace what the peer sent; extend its forwarded-for chain
            headers: list[tuple[bytes, bytes]] = []
            for k, v in req.headers:
                lk = k.lower()
                if lk == XFCC:
                    continue
                if lk == XFF:
                    forwarded = v + b", " + forwarded
                    continue
                headers.append((k, v))
            req.headers = headers
        req.headers += ((XFF, forwarded), (XFCC, xfcc))
        try:
            resp = await self._endpoint(req)
        except UpstreamConnectError:
            if self.app_seen:  # it ran and went away: fail fast, peers go elsewhere
                raise
            return await self._wait_for_app(req)
        self.app_seen = True
        return strip_gossamer_error(resp)

    async def _wait_for_app(self, req: Request) -> Response:
        """The app refused the connection (not started yet, or restarting): try again
        every 100 ms for at most `hold` seconds (and the request's deadline), then 503."""
        loop = asyncio.get_running_loop()
        deadline = min(loop.time() + self.hold, req.deadline)  # the loop's clock, as deadlines
        while loop.time() + APP_RETRY_INTERVAL <= deadline:
            await asyncio.sleep(APP_RETRY_INTERVAL)
            req.tried.clear()
            try:
                resp = await self._endpoint(req)
            except UpstreamConnectError:
                continue
            self.app_seen = True
            return strip_gossamer_error(resp)
        app_port = req.conn.app_port
        raise AppNotReady(
            f"the app does not accept connections on {app_port.address}:"
            f"{app_port.local_port} (waited {self.hold:g} s)"
        )

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()


class _Refuse(asyncio.Protocol):
    """No certificate yet: nobody can be served."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.abort()  # type: ignore[attr-defined]
