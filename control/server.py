"""The control-plane process: configuration, registry, publisher, cache and gRPC ports.

`ControlPlane(config_path)` loads mesh.yaml (fatal if invalid at start), opens the
registry store and syncs mesh.yaml's static services into it, publishes the first
snapshots, then serves:
- `control.bootstrap_listen`: server-authenticated TLS, the identity service only
  (a new sidecar's first certificate, with a join token);
- `control.xds_listen`: mutual TLS; ADS, identity (renewal), registration, tap (live
  request records, control/tap_hub.py), gRPC health;
  the peer's SPIFFE ID decides which resources it gets;
- `control.insecure_xds_listen` (optional): plaintext ADS for local proxyless gRPC
  clients, with a warning at start;
- `control.api_listen`: the operator API and dashboard (control/operator_server.py).
Registry changes (sidecar registrations on any replica, mesh.yaml reloads) flow from
the store's watch to the publisher; trust-bundle changes (root rotation), revocation-list
changes and CRLs due to be signed again reach the ROOTCA secret through
control/trust_push.py. With an etcd store the join tokens, revocations, bundle and every
replica's CRLs are shared (control/etcd_security.py). `secure=False` runs without a CA
(protocol tests on the insecure port); `trust_bundle_loader` then provides the bundle,
if any.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from gossamer.contract.xds import ADS_SERVICE, SHORT_NAMES
from gossamer.discovery.mesh_services import MeshServices, parse_services
from gossamer.discovery.store import Store
from gossamer.discovery.stores import REGISTRY_FILE, open_store
from gossamer.errors import ConfigError, GossamerError
from gossamer.logs import event
from gossamer.yamlconf import Node

from .ads import AdsServicer, Identify, no_identity
from .ads_stream import StreamEnvironment
from .api_limits import ApiLimits
from .audit import AuditLog
from .cache import SnapshotCache
from .config import Address, MeshConfig
from .nodes import resolve_group
from .operator_server import ApiServer
from .publisher import Publisher
from .registry_link import RegistryLink
from .reload import ConfigWatcher
from .replica_presence import ReplicaPresence, presence_for
from .security import MeshSecurity
from .shared_security import shared_for
from .stream_status import StreamRegistry
from .translate import NodeGroup
from .trust_push import TrustBundleLoader, TrustPusher

log = logging.getLogger("gossamer.control")

ServerHook = Callable[[grpc.aio.Server], None]
# gRPC keepalive of the xDS ports: every connection with a stream open is pinged every
# KEEPALIVE_SECONDS and dropped when a ping goes unanswered for KEEPALIVE_TIMEOUT_SECONDS,
# so a node that vanished (no FIN, no RST) leaves the registry within 15 s
KEEPALIVE_SECONDS = 10.0
KEEPALIVE_TIMEOUT_SECONDS = 5.0


class ControlPlane:
    def __init__(
        self,
        config_path: str | Path,
        *,
        reload_interval: float = 0.5,
        secure: bool = True,
        trust_bundle_loader: TrustBundleLoader | None = None,
        store: Store | None = None,
        api_limits: ApiLimits | None = None,
    ) -> None:
        self.config_path = Path(config_path)
        self.api_limits = api_limits or ApiLimits()
        self.cache = SnapshotCache()
        self.registry = StreamRegistry()
        self.publisher = Publisher(self.cache)
        self.health = HealthServicer()
        self.watcher = ConfigWatcher(self.config_path, self._on_config, interval=reload_interval)
        self.trust = TrustPusher(self.publisher, lambda: self.security, trust_bundle_loader)
        self._secure = secure
        self._store = store
        self._static: MeshServices | None = None
        self.link: RegistryLink | None = None
        self.security: MeshSecurity | None = None
        self.api: ApiServer | None = None
        self.serve_api = True
        self._servers: list[grpc.aio.Server] = []
        self._servicers: list[Callable[[grpc.aio.Server], None]] = []
        self._bound: dict[str, int] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._presence: ReplicaPresence | None = None
        self.env = StreamEnvironment(
            cache=self.cache,
            registry=self.registry,
            resolve_group=self._resolve_group,
            ensure_group=self.publisher.ensure_group,
        )

    @property
    def mesh(self) -> MeshConfig:
        mesh = self.publisher.mesh
        if mesh is None:
            raise RuntimeError("the control plane has no configuration yet")
        return mesh

    def _resolve_group(self, node: base_pb2.Node, identity: str | None) -> NodeGroup:
        return resolve_group(node, identity, self.mesh.trust_domain)

    def _on_config(self, root: Node, mesh: MeshConfig) -> None:
        static = parse_services(root)  # may raise ConfigError: nothing applied
        previous = self.publisher.mesh
        if previous is not None and previous.control != mesh.control:
            event(log, logging.WARNING, "control: settings changed; they apply after a restart")
            mesh = dataclasses.replace(mesh, control=previous.control)
        self.publisher.set_mesh(mesh)
        self._static = static
        if self.link is not None:
            self.link.request_sync(static)
        self.trust.refresh_bundle()

    def refresh_revocations(self) -> None:
        """Sign the CRLs again if due and push them (the revocation API calls this)."""
        self.trust.refresh_revocations()

    # -- lifecycle -----------------------------------------------------------------
    async def start(self) -> None:
        self.watcher.load_initial()  # raises ConfigError: the process must not start
        control = self.mesh.control
        if not self._secure and control.insecure_xds_listen is None:
            raise ConfigError(
                "nothing to serve: control.insecure_xds_listen is not set",
                field="control.insecure_xds_listen",
                source=str(self.config_path),
            )
        # an embedded registry restarting from its file lost the sidecars' registrations
        restarted = (
            self._store is None
            and control.store == "embedded"
            and (Path(control.data_dir) / REGISTRY_FILE).exists()
        )
        hold = control.lease_ttl if restarted else 0.0
        store = self._store or open_store(control.store, data_dir=control.data_dir)
        self.link = RegistryLink(store, self.publisher.set_state)
        if self._secure:
            self.security = MeshSecurity(
                control.ca_dir,
                self.mesh.trust_domain,
                self.link.registry,
                control.lease_ttl,
                audit=AuditLog(control.data_dir),
                max_token_ttl=control.max_token_ttl,
                max_cert_ttl=control.max_cert_ttl,
                data_dir=Path(control.data_dir),
                shared=shared_for(store, control),
            )
        assert self._static is not None
        await self.link.start(self._static)  # the registry's state before anything is served
        self._presence = presence_for(store, control.lease_ttl)
        if self._presence is not None:
            # every replica gone for a lease TTL: the sidecars' registrations went too
            hold = await self._presence.announce()
        if self.security is not None:
            self.security.shared.on_change = self.trust.shared_changed.set
            await self.security.shared.start()
            await self.security.publish()  # this replica's CRLs before its first leaf
        self.trust.refresh_bundle()
        if hold > 0:
            self.publisher.hold(hold)
            event(
                log,
                logging.INFO,
                "waiting for sidecars to register again before serving configuration",
                seconds=round(hold, 3),
            )
        self.publisher.publish()  # snapshots exist before the first client can connect
        if self.security is not None:
            sec = self.security
            await self.serve_port(
                control.bootstrap_listen,
                name="bootstrap",
                credentials=sec.bootstrap_credentials(),
                services=[sec.add_identity],
            )
            await self.serve_port(
                control.xds_listen,
                name="xds",
                credentials=sec.mtls_credentials(),
                identify=sec.identify,
                services=[sec.add_identity, sec.add_registration, sec.add_tap],
            )
            self._tasks.append(asyncio.create_task(self.trust.watch(), name="ca-watcher"))
        if control.insecure_xds_listen is not None:
            event(
                log,
                logging.WARNING,
                "serving xDS without TLS or authentication",
                address=str(control.insecure_xds_listen),
                detail="any local process can read the mesh configuration from this port",
            )
            await self.serve_port(control.insecure_xds_listen, name="insecure_xds")
        if self.serve_api:
            self.api = ApiServer(self, self.api_limits)
            self._bound["api"] = await self.api.start()
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        await self.health.set(ADS_SERVICE, health_pb2.HealthCheckResponse.SERVING)
        self._tasks.append(asyncio.create_task(self.watcher.run(), name="config-watcher"))
        event(
            log,
            logging.INFO,
            "control plane ready",
            config=str(self.config_path),
            trust_domain=self.mesh.trust_domain,
            groups=len(self.cache.groups()),
        )

    def add_servicer(self, register: ServerHook) -> None:
        """Serve another gRPC service on every ADS port opened from now on."""
        self._servicers.append(register)

    async def serve_port(
        self,
        address: Address,
        *,
        name: str,
        credentials: grpc.ServerCredentials | None = None,
        identify: Identify = no_identity,
        services: list[ServerHook] | None = None,
    ) -> int:
        """Serve ADS + health (+ `services`) on one address; returns the bound port (0
        picks one). The bootstrap port passes `services` without ADS: see start()."""
        server = grpc.aio.server(
            options=[
                # a peer that vanished without closing (a node that lost power or its
                # network) is found by an unanswered ping: its registration stream ends
                # and its instances leave the registry within KEEPALIVE + its timeout
                ("grpc.keepalive_time_ms", int(KEEPALIVE_SECONDS * 1000)),
                ("grpc.keepalive_timeout_ms", int(KEEPALIVE_TIMEOUT_SECONDS * 1000)),
                ("grpc.http2.max_pings_without_data", 0),  # idle streams are pinged too
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
                ("grpc.max_concurrent_streams", 100_000),
                ("grpc.so_reuseport", 0),  # a second control plane on the same port must fail
            ]
        )
        if name != "bootstrap":
            ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(
                AdsServicer(self.env, identify), server
            )
            for register in self._servicers:
                register(server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        for register in services or ():
            register(server)
        target = str(address)
        port: int
        try:
            if credentials is None:
                port = server.add_insecure_port(target)
            else:
                port = server.add_secure_port(target, credentials)
        except RuntimeError as exc:
            raise GossamerError(
                f"cannot listen on {target}: {exc}", hint="is the port in use?"
            ) from None
        if port == 0:
            raise GossamerError(f"cannot listen on {target}", hint="is the port in use?")
        await server.start()
        self._servers.append(server)
        self._bound[name] = port
        event(log, logging.INFO, "listening", port_name=name, address=f"{address.host}:{port}")
        return port

    def bound_port(self, name: str) -> int:
        return self._bound[name]

    def status(self) -> dict[str, Any]:
        """What the operator API and `gossamer status` show: configuration, snapshot
        versions per group, publishing, and every stream's ACK/NACK state."""
        mesh = self.publisher.mesh
        stats = self.publisher.stats
        error = self.watcher.last_error
        snapshots = {}
        for group in self.cache.groups():
            snapshot = self.cache.get(group)
            if snapshot is not None:
                snapshots[group] = {
                    SHORT_NAMES.get(t, t): {"version": v.version, "resources": len(v.resources)}
                    for t, v in snapshot.types.items()
                }
        return {
            "config": {
                "path": str(self.config_path),
                "trust_domain": mesh.trust_domain if mesh else None,
                "loads": self.watcher.loads,
                "last_error": error.message if error else None,
            },
            "ports": dict(self._bound),
            "publisher": {
                "publishes": stats.publishes,
                "last_seconds": stats.last_duration,
                "last_at": stats.last_at,
                "failures": stats.failures,
            },
            "snapshots": snapshots,
            **self.registry.to_dict(),
        }

    def reload(self) -> None:
        """SIGHUP: re-read mesh.yaml and the trust bundle now."""
        self.watcher.trigger()
        self.trust.refresh_bundle()

    async def settle(self) -> None:
        """Wait until mesh.yaml's last load reached the registry and the snapshots."""
        if self.link is not None:
            await self.link.settle()
        self.publisher.publish()

    async def stop(self, grace: float = 2.0) -> None:
        with contextlib.suppress(Exception):
            await self.health.enter_graceful_shutdown()
        if self._presence is not None and self.link is not None:
            # other replicas share the registry: this one's sidecars move there and
            # take their instances over, so their endpoints must not go away meanwhile
            self.link.registry.leave_leases()
            self._presence.leave()  # a restart within a lease TTL finds them all there
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.gather(*(s.stop(grace) for s in self._servers), return_exceptions=True)
        self._servers.clear()
        if self.api is not None:
            await self.api.stop()
        if self.security is not None:
            await self.security.shared.close()
        if self._presence is not None:
            await self._presence.close()
        if self.link is not None:
            await self.link.close()

    async def run_until_signalled(self) -> None:
        """Start, then serve until SIGTERM/SIGINT; SIGHUP reloads."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        await self.start()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        try:
            await stop.wait()
            event(log, logging.INFO, "shutting down", streams=len(self.registry))
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            await self.stop()
