"""The sidecar at run time: listeners, pools, configuration, credentials, admin server.

    sidecar = Sidecar(options, credentials=creds, config=config, telemetry=telemetry)
    await sidecar.start()          # binds admin, metrics, outbound and inbound ports
    sidecar.apply(new_config)      # atomic swap; ConfigError leaves the old one (NACK)
    sidecar.rotate(new_creds)      # new TLS contexts for new connections only
    sidecar.begin_drain()          # /ready fails, responses say `Connection: close`
    await sidecar.stop(grace=10)   # stop accepting, let in-flight requests finish

Without credentials the inbound port refuses connections and outbound mTLS cannot
connect; without configuration outbound requests wait up to `hold_until_ready` seconds
for it, then get 503 `no-config`; inbound requests whose app does not accept
connections wait as long for it, then get 503 `app-not-ready`; `/ready` says what is
missing. The agent (agent/session.py) calls `apply` and `rotate`. `telemetry` (metrics,
traces, access logs; telemetry/wiring.py) defaults to metrics only; `options.telemetry` False
leaves out the per-request metrics and spans (the benchmark's reference).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gossamer.errors import ConfigError, GossamerError
from gossamer.logs import event
from gossamer.proxy.admin import Admin, MetricsOnly
from gossamer.proxy.agent.app_probe import AppProbe, ProbeSpec
from gossamer.proxy.config import (
    AppPort,
    Cluster,
    ConfigHolder,
    Endpoint,
    NodeInfo,
    OutlierDetection,
    ProxyConfig,
)
from gossamer.proxy.listeners.inbound import Inbound
from gossamer.proxy.listeners.limits import ListenerLimits
from gossamer.proxy.listeners.mesh_dns import MeshDns
from gossamer.proxy.listeners.outbound import Outbound
from gossamer.proxy.service import Service
from gossamer.proxy.telemetry.wiring import Telemetry
from gossamer.proxy.transport.h2.server import H2Server
from gossamer.proxy.transport.http1.conns import ConnectionInfo, ConnectionTracker
from gossamer.proxy.transport.http1.server import Http1Server, ServerLimits
from gossamer.proxy.transport.tls_contexts import CredentialHolder, Credentials
from gossamer.proxy.upstream.cluster import ClusterManager, Snapshot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SidecarOptions:
    node: NodeInfo
    outbound_port: int = 15001
    inbound_port: int = 15006
    admin_port: int = 15000
    outbound_address: str = "127.0.0.1"
    inbound_address: str = "0.0.0.0"
    admin_address: str = "127.0.0.1"  # /config_dump stays inside the namespace
    # GET /metrics only, for Prometheus and the control plane; 0: no metrics port (the
    # CLI's default is ports.METRICS_PORT, 15090)
    metrics_port: int = 0
    metrics_address: str = "0.0.0.0"
    # the app's DNS (listeners/mesh_dns.py; 0: none); upstreams: resolv.conf's if empty
    dns_port: int = 0
    dns_address: str = "127.0.0.1"
    dns_upstreams: tuple[tuple[str, int], ...] = ()
    probe: ProbeSpec | None = None
    limits: ServerLimits = field(default_factory=ServerLimits)
    connections: ListenerLimits = field(default_factory=ListenerLimits)
    drain_timeout: float = 10.0
    # how long a request waits for what it needs before a 503 (0: fail at once):
    # outbound, the first configuration; inbound, the app accepting connections
    hold_until_ready: float = 5.0
    telemetry: bool = True  # per-request metrics, spans and access logs


def _with_inbound_clusters(config: ProxyConfig) -> ProxyConfig:
    """Add the `inbound|<port>` clusters (the app on loopback) the inbound side uses."""
    clusters = dict(config.clusters)
    endpoints = dict(config.endpoints)
    for ap in config.inbound.app_ports:
        clusters[ap.cluster_name] = _app_cluster(config.node, ap)
        endpoints[ap.cluster_name] = (Endpoint(ap.address, ap.local_port),)
    return dataclasses.replace(config, clusters=clusters, endpoints=endpoints)


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim: returns free memory inside the heap to the OS, which the
    allocator alone does only at the top of the heap."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim
        return trim
    except (OSError, AttributeError):
        return None


def _app_cluster(node: NodeInfo, ap: AppPort) -> Cluster:
    return Cluster(
        name=ap.cluster_name,
        service=node.service,
        namespace=node.namespace,
        port=ap.port,
        protocol=ap.protocol,
        tls=False,
        max_idle_per_endpoint=256,
        # the one local app is never ejected: a refused connection waits for it instead
        outlier=OutlierDetection(consecutive_failures=0),
    )


class Sidecar:
    def __init__(
        self,
        options: SidecarOptions,
        *,
        credentials: Credentials | None = None,
        config: ProxyConfig | None = None,
        telemetry: Telemetry | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.options = options
        self.rng = rng or random.Random()
        self.clock = clock
        self.telemetry = telemetry or Telemetry()
        self.metrics = self.telemetry.metrics
        self.credentials = CredentialHolder()
        self.holder = ConfigHolder()
        self.manager = ClusterManager(
            self.credentials,
            trust_domain=options.node.trust_domain,
            rng=self.rng,
            clock=clock,
            on_eject=self.metrics.outlier_ejection,
            on_overflow=self.metrics.overflow,
            on_health_failure=self.metrics.health_check_failure,
        )
        self.draining = False
        self.configured = asyncio.Event()  # set when the first configuration is applied
        self.xds_status: Callable[..., dict[str, Any]] | None = None  # set by the agent
        self.snapshot: Snapshot | None = None
        self.probe = AppProbe(options.probe)
        self.bound_ports: dict[str, int] = {}
        listeners = ("outbound", "inbound", "admin", "metrics")
        self.trackers = {n: ConnectionTracker() for n in listeners}
        self.connection_limits = {n: options.connections.limit(n, self.metrics) for n in listeners}
        self.admin = Admin(self)
        self.metrics_only = MetricsOnly(self.admin)
        self._servers: list[asyncio.AbstractServer] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.holder.subscribe(self._prepare)
        self._initial = config
        self.outbound: Outbound | None = None
        self.inbound: Inbound | None = None
        # mesh names, their VIPs and the app's DNS (with --dns-port)
        self.dns = MeshDns(options.node, options.dns_upstreams) if options.dns_port else None
        if credentials is not None:
            self.rotate(credentials)

    # -- configuration -------------------------------------------------------------------
    def _prepare(self, config: ProxyConfig) -> Callable[[], None]:
        if config.node.service != self.options.node.service:
            raise ConfigError(
                f"configuration for service {config.node.service!r}, "
                f"this sidecar is {self.options.node.service!r}",
                field="node.service",
            )
        for name, want in (
            ("outbound_port", config.listeners.outbound_port),
            ("inbound_port", config.listeners.inbound_port),
        ):
            have = self.bound_ports.get(name.split("_")[0])
            if want and have is not None and want != have:
                raise ConfigError(
                    f"listener port {want} differs from the one in use ({have}); "
                    "ports are fixed at start-up",
                    field=f"listeners.{name}",
                )
        snapshot, commit = self.manager.prepare(_with_inbound_clusters(config))
        dns = self.dns
        names = None
        if dns is not None:
            snapshot, names = dns.prepare(config, snapshot)

        def publish() -> None:
            commit()
            self.snapshot = snapshot
            if dns is not None and names is not None:
                dns.commit(names)
            self.configured.set()
            event(log, logging.INFO, "configuration applied", versions=dict(config.versions))

        return publish

    def apply(self, config: ProxyConfig) -> None:
        """Switch to `config` atomically; a ConfigError leaves the current one."""
        self.holder.apply(config)

    def rotate(self, credentials: Credentials) -> None:
        """New certificate for new connections; open ones keep theirs."""
        contexts = self.credentials.update(credentials)
        self.metrics.set_certificate_expiry(contexts.spiffe_id, contexts.not_after.timestamp())
        event(
            log,
            logging.INFO,
            "certificate installed",
            spiffe_id=contexts.spiffe_id,
            not_after=contexts.not_after.isoformat(),
        )

    def current(self) -> Snapshot | None:
        return self.snapshot

    def not_ready(self) -> list[str]:
        missing = []
        if self.credentials.contexts is None:
            missing.append("certificate")
        if self.snapshot is None:
            missing.append("configuration")
        if not self.probe.ready:
            missing.append(f"app ({self.probe.last_error})")
        if self.draining:
            missing.append("draining")
        return missing

    # -- life cycle ------------------------------------------------------------------------
    async def start(self) -> None:
        opts = self.options
        loop = asyncio.get_running_loop()
        local_service = opts.node.service
        self.outbound = Outbound(
            self.current,
            credentials=self.credentials,
            telemetry=self.telemetry,
            tracker=self.trackers["outbound"],
            limits=opts.limits,
            local_service=local_service,
            trust_domain=opts.node.trust_domain,
            own_ports=frozenset(),
            rng=self.rng,
            clock=self.clock,
            request_telemetry=opts.telemetry,
            hold=opts.hold_until_ready,
            configured=self.configured,
        )
        self.inbound = Inbound(
            self.current,
            credentials=self.credentials,
            telemetry=self.telemetry,
            tracker=self.trackers["inbound"],
            limits=opts.limits,
            local_service=local_service,
            clock=self.clock,
            handshake_timeout=opts.connections.handshake_timeout,
            connection_limit=self.connection_limits["inbound"],
            request_telemetry=opts.telemetry,
            hold=opts.hold_until_ready,
        )
        listeners: list[tuple[str, Callable[[], asyncio.BaseProtocol], str, int]] = [
            ("admin", self._local_server("admin", self.admin.service), opts.admin_address,
             opts.admin_port),
            ("outbound", self.outbound.protocol, opts.outbound_address, opts.outbound_port),
            ("inbound", self.inbound.protocol, opts.inbound_address, opts.inbound_port),
        ]  # fmt: skip
        if opts.metrics_port:
            metrics = self._local_server("metrics", self.metrics_only.service)
            listeners.append(("metrics", metrics, opts.metrics_address, opts.metrics_port))
        try:
            for name, factory, address, port in listeners:
                server = await loop.create_server(
                    self.connection_limits[name].wrap(factory),
                    address,
                    port,
                    reuse_address=True,
                    backlog=1024,
                )
                self._servers.append(server)
                self.bound_ports[name] = server.sockets[0].getsockname()[1]
        except OSError as exc:
            await self.stop(grace=0)
            raise GossamerError(
                f"cannot listen on port {port} ({name}): {exc.strerror or exc}",
                hint="choose another port with --inbound-port/--outbound-port/--admin-port/"
                "--metrics-port",
            ) from None
        if self.dns is not None:
            try:
                self.bound_ports["dns"] = await self.dns.start(opts.dns_address, opts.dns_port)
            except OSError as exc:
                await self.stop(grace=0)
                raise GossamerError(
                    f"cannot listen on port {opts.dns_port} (dns): {exc.strerror or exc}",
                    hint="choose another port with --dns-port (0: no DNS listener)",
                ) from None
        self.outbound.own_ports = frozenset(self.bound_ports.values())
        self.outbound.open_endpoint = self.manager.open
        if self._initial is not None:
            self.apply(self._initial)
        self.probe.start()
        self._tasks.append(loop.create_task(self._housekeeping()))
        self._tasks.append(loop.create_task(self._outlier_intervals()))
        self.metrics.add_gauge(
            "gossamer_upstream_connections",
            "Open connections to upstream endpoints.",
            lambda: sum(p.open for p in self.manager.pools()),
        )
        # start-up objects never become garbage: keep the collector off them, and let
        # the young generation grow (the data path allocates short-lived containers)
        gc.collect()
        gc.freeze()
        gc.set_threshold(20000, 50, 100)
        event(log, logging.INFO, "sidecar listening", **self.bound_ports)

    def _local_server(self, name: str, service: Service) -> Callable[[], asyncio.Protocol]:
        """The protocol factory of the admin or metrics port: plain HTTP/1.1, the data
        path's server with its limits, its own connection tracker."""
        tracker, limits = self.trackers[name], self.options.limits

        def protocol() -> asyncio.Protocol:
            return Http1Server(service, ConnectionInfo(name), tracker, limits)

        return protocol

    async def _housekeeping(self) -> None:
        trim = _malloc_trim()
        while True:
            await asyncio.sleep(5.0)
            self.manager.expire_idle()
            # Closed connections are reference cycles (protocol <-> parser/transport)
            # that hold their TLS state; with the young generation this large they
            # would wait for a rare full collection, and RSS would creep up under
            # connection churn. A full pass over what is not frozen takes ~1 ms.
            gc.collect()
            if trim is not None:
                trim(0)  # and give the freed heap pages back

    async def _outlier_intervals(self) -> None:
        """Outlier detection's interval work (success rate, ejection-time decay); each
        cluster runs it when its own interval has passed."""
        while True:
            await asyncio.sleep(0.25)
            self.manager.tick()

    def begin_drain(self) -> None:
        """Draining starts (before the listeners close): `/ready` fails, and every
        HTTP/1.1 response on the data path from now on carries `Connection: close` and
        ends its connection, and HTTP/2 connections get GOAWAY, so clients and peers
        reconnect elsewhere."""
        self.draining = True
        for side in ("outbound", "inbound"):
            tracker = self.trackers[side]
            tracker.draining = True
            for conn in list(tracker.live):
                if isinstance(conn, H2Server):
                    conn.shutdown()  # GOAWAY now: open streams finish, new ones go elsewhere

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting, let in-flight requests finish within `grace`, close the rest."""
        grace = self.options.drain_timeout if grace is None else grace
        self.draining = True
        for server in self._servers:
            server.close()
        self.probe.stop()
        if self.dns is not None:
            await self.dns.stop()
        aborted = await asyncio.gather(
            self.trackers["outbound"].drain(grace), self.trackers["inbound"].drain(grace)
        )
        await self.trackers["admin"].drain(0)
        await self.trackers["metrics"].drain(0)
        for tracker in self.trackers.values():
            tracker.stop()
        for task in self._tasks:
            task.cancel()
        self.manager.close()
        for side in (self.outbound, self.inbound):
            if side is not None:
                await side.close()
        with contextlib.suppress(Exception):
            for server in self._servers:
                await asyncio.wait_for(server.wait_closed(), 1.0)
        self._servers.clear()
        if sum(aborted):
            event(log, logging.WARNING, "connections aborted at shutdown", count=sum(aborted))

    def describe(self) -> dict[str, Any]:
        return {"service": self.options.node.service, "ports": dict(self.bound_ports)}
