"""The control-plane process: configuration, publisher, snapshot cache and gRPC ports.

`ControlPlane(config_path)` loads mesh.yaml (fatal if invalid at start), publishes the
first snapshots, then serves ADS and the standard gRPC health service on every
configured port. Today that is `control.insecure_xds_listen` (plaintext; a warning is
logged). The mTLS port (`control.xds_listen`) joins through `serve_port(address,
credentials=..., identify=...)` once the identity service exists: the same servicer,
with `identify` reading the peer's SPIFFE ID from the TLS auth context, so each port
decides how nodes are placed in groups.

Plug-in points for the next step:
- more services (identity, registration): `plane.add_servicer(register)` before `start()`;
- registry: call `publisher.set_state(state)` (e.g. `sources.follow_store(store,
  plane.publisher.set_state)`) and construct with `static_registry=False`; today the
  static services of mesh.yaml are read by the temporary adapter in static_services.py;
- operator API: read `plane.registry.to_dict()` (streams, ACK/NACK), `plane.cache`
  (snapshots and versions), `plane.publisher.stats`, `plane.watcher.last_error`;
- trust bundle: `trust_bundle_loader(ca_dir)`, re-read on every reload and SIGHUP.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
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

from gossamer.errors import ConfigError, GossamerError
from gossamer.logs import event
from gossamer.yamlconf import Node

from .ads import AdsServicer, Identify, no_identity
from .cache import SnapshotCache
from .config import Address, MeshConfig
from .nodes import resolve_group
from .publisher import Publisher
from .reload import ConfigWatcher
from .static_services import registry_from_document
from .stream import StreamEnvironment
from .streams import StreamRegistry
from .translate import NodeGroup
from .translate.names import SHORT_NAMES

log = logging.getLogger("gossamer.control")

ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"
TrustBundleLoader = Callable[[Path], bytes | None]


def load_trust_bundle(ca_dir: Path) -> bytes | None:
    """The CA's trust bundle, or None when there is no CA (yet) in `ca_dir`."""
    try:  # the CA lands on main separately; until then there is no bundle
        ca_module = importlib.import_module("gossamer.certs.ca")
    except ImportError:
        return None
    if not ca_dir.exists():
        return None
    try:
        bundle: bytes = ca_module.CertificateAuthority.load(ca_dir).trust_bundle_pem()
    except GossamerError as exc:
        event(log, logging.WARNING, "no trust bundle", ca_dir=str(ca_dir), error=exc.message)
        return None
    return bundle


class ControlPlane:
    def __init__(
        self,
        config_path: str | Path,
        *,
        reload_interval: float = 0.5,
        trust_bundle_loader: TrustBundleLoader = load_trust_bundle,
        static_registry: bool = True,
    ) -> None:
        self.config_path = Path(config_path)
        self.cache = SnapshotCache()
        self.registry = StreamRegistry()
        self.publisher = Publisher(self.cache)
        self.health = HealthServicer()
        self.watcher = ConfigWatcher(self.config_path, self._on_config, interval=reload_interval)
        self._trust_bundle_loader = trust_bundle_loader
        self._static_registry = static_registry
        self._servers: list[grpc.aio.Server] = []
        self._servicers: list[Callable[[grpc.aio.Server], None]] = []
        self._bound: dict[str, int] = {}
        self._tasks: list[asyncio.Task[None]] = []
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
        state = None
        if self._static_registry:
            revision = (self.publisher.state.revision + 1) if self.publisher.state else 1
            state = registry_from_document(root, revision)  # may raise ConfigError: nothing applied
        previous = self.publisher.mesh
        if previous is not None and previous.control != mesh.control:
            event(log, logging.WARNING, "control: settings changed; they apply after a restart")
            mesh = MeshConfig(mesh.trust_domain, previous.control, mesh.policies, mesh.source)
        self.publisher.set_mesh(mesh)
        if state is not None:
            self.publisher.set_state(state)
        self.publisher.set_trust_bundle(self._trust_bundle_loader(mesh.control.ca_dir))

    # -- lifecycle -----------------------------------------------------------------
    async def start(self) -> None:
        self.watcher.load_initial()  # raises ConfigError: the process must not start
        self.publisher.publish()  # snapshots exist before the first client can connect
        control = self.mesh.control
        if control.insecure_xds_listen is None:
            raise ConfigError(
                "nothing to serve: control.insecure_xds_listen is not set",
                field="control.insecure_xds_listen",
                source=str(self.config_path),
                hint="the mTLS port (xds_listen) needs the identity service, which is not built yet; "
                "set insecure_xds_listen: 127.0.0.1:15010 for local clients",
            )
        event(
            log,
            logging.WARNING,
            "serving xDS without TLS or authentication",
            address=str(control.insecure_xds_listen),
            detail="any local process can read the mesh configuration from this port",
        )
        await self.serve_port(control.insecure_xds_listen, name="insecure_xds")
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

    def add_servicer(self, register: Callable[[grpc.aio.Server], None]) -> None:
        """Serve another gRPC service on every port opened from now on (the identity and
        registration services): `register` is e.g. `lambda s: add_XServicer_to_server(x, s)`."""
        self._servicers.append(register)

    async def serve_port(
        self,
        address: Address,
        *,
        name: str,
        credentials: grpc.ServerCredentials | None = None,
        identify: Identify = no_identity,
    ) -> int:
        """Serve ADS + health on one address; returns the bound port (0 picks one)."""
        server = grpc.aio.server(
            options=[
                ("grpc.keepalive_time_ms", 30_000),
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
                ("grpc.max_concurrent_streams", 100_000),
                ("grpc.so_reuseport", 0),  # a second control plane on the same port must fail
            ]
        )
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(
            AdsServicer(self.env, identify), server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        for register in self._servicers:
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
        mesh = self.publisher.mesh
        if mesh is not None:
            self.publisher.set_trust_bundle(self._trust_bundle_loader(mesh.control.ca_dir))

    async def stop(self, grace: float = 2.0) -> None:
        with contextlib.suppress(Exception):
            await self.health.enter_graceful_shutdown()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.gather(*(s.stop(grace) for s in self._servers), return_exceptions=True)
        self._servers.clear()

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
