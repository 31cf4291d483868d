"""`gossamer gateway`: a node's gateway process, from settings to a running loop.

    gossamer gateway --node node-2 --listen 0.0.0.0:15443 --advertise 10.0.0.2:15443 \\
        --control 10.0.0.2:15012,10.0.0.1:15012 --token-file gateway.token

`gossamer/cli/gateway_cmd.py` parses flags into `GatewaySettings` and calls `run`, which
binds the gateway port (`--listen`), the admin port (127.0.0.1:15021 by default:
`/live`, `/ready` — 200 once certified, registered and configured —, `/routes` (the
routing table: each mesh SNI and its local instances; the peers' addresses) and
`/metrics` (gateway/metrics.py)) and the metrics port (0.0.0.0:15020: `GET /metrics`
only, for Prometheus; both capped at 128 connections, a newcomer displacing the
oldest), then starts the agent (agent.py): bootstrap with the
join token, registration as the node's gateway, configuration over ADS, renewal, with
the sidecar's control-plane replica failover (`--control a,b`, `--bootstrap a,b`,
`--control-probe-interval`: proxy/agent/replicas.py, channels.py). Each
applied configuration replaces the routing table (table.py) used by new connections
(relay.py). SIGTERM or SIGINT deregisters and stops; open relays are closed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
from dataclasses import dataclass
from pathlib import Path

from gossamer.certs.tokens import parse_token
from gossamer.contract import ports
from gossamer.contract.limits import MAX_ADMIN_CONNECTIONS
from gossamer.errors import GossamerError, UsageError
from gossamer.fdlimits import ConnectionLimit, raise_nofile_limit
from gossamer.logs import event, setup_logging
from gossamer.proxy.agent.bootstrap import read_token_file
from gossamer.proxy.agent.replicas import (
    DEFAULT_PROBE_INTERVAL,
    bootstrap_addresses,
    expand,
    parse_addresses,
    parse_hostport,
)
from gossamer.proxy.agent.session import start_unless_stopped
from gossamer.proxy.config import ProxyConfig
from gossamer.proxy.gateway.agent import GatewayAgent, GatewayAgentOptions
from gossamer.proxy.gateway.metrics import GatewayMetrics
from gossamer.proxy.gateway.relay import RelayLimits, Relays
from gossamer.proxy.gateway.table import RouteTable
from gossamer.proxy.service import Request, Response
from gossamer.proxy.transport.http1.conns import ConnectionInfo, ConnectionTracker
from gossamer.proxy.transport.http1.server import Http1Server

log = logging.getLogger("gossamer.proxy.gateway")

GATEWAY_PORT = 15443  # Istio's east-west gateway port
GATEWAY_ADMIN_PORT = 15021  # Istio's gateway status port
GATEWAY_METRICS_PORT = 15020  # GET /metrics only, every interface (0: none)


@dataclass(frozen=True)
class GatewaySettings:
    node: str
    listen: str
    advertise: str
    control: str
    token_file: Path | None = None
    bootstrap: str | None = None
    control_probe_interval: float = DEFAULT_PROBE_INTERVAL
    zone: str = ""
    instance_id: str | None = None
    admin_port: int = GATEWAY_ADMIN_PORT
    admin_address: str = "127.0.0.1"
    metrics_port: int = GATEWAY_METRICS_PORT
    metrics_address: str = "0.0.0.0"
    cert_ttl: int = 0
    max_connections: int = RelayLimits.max_connections
    hello_timeout: float = RelayLimits.hello_timeout
    connect_timeout: float = RelayLimits.connect_timeout
    idle_timeout: float = RelayLimits.idle_timeout


def _token(settings: GatewaySettings) -> str:
    token = os.environ.get("GOSSAMER_TOKEN", "")
    if settings.token_file is not None:
        token = read_token_file(settings.token_file)
    if not token:
        raise UsageError(
            "a join token is required: --token-file FILE or $GOSSAMER_TOKEN",
            hint="gossamer token create --service gateway --namespace gossamer-system "
            "(an admin's; --allow-address ADDR when --advertise is not the address the "
            "control plane sees)",
        )
    parse_token(token)  # a malformed token fails here, before anything starts
    return token


def agent_options(settings: GatewaySettings) -> GatewayAgentOptions:
    control = expand(parse_addresses(settings.control, "--control"))
    advertise = parse_hostport(settings.advertise, "--advertise", listed=False)
    bootstrap = (
        expand(parse_addresses(settings.bootstrap, "--bootstrap"))
        if settings.bootstrap
        else bootstrap_addresses(control, ports.BOOTSTRAP_PORT)
    )
    return GatewayAgentOptions(
        node=settings.node,
        zone=settings.zone,
        advertise=advertise,
        control=control,
        bootstrap=bootstrap,
        token=_token(settings),
        instance_id=settings.instance_id or f"{settings.node}-gateway",
        cert_ttl=settings.cert_ttl,
        probe_interval=settings.control_probe_interval,
    )


class Gateway:
    """The listening sockets, the relays and the agent of one gateway process."""

    def __init__(self, settings: GatewaySettings, options: GatewayAgentOptions) -> None:
        self.settings = settings
        self.metrics = GatewayMetrics()
        limits = RelayLimits(
            settings.max_connections,
            settings.hello_timeout,
            settings.connect_timeout,
            settings.idle_timeout,
        )
        self.relays = Relays(limits, self.metrics)
        self.metrics.instances = self._instances
        self.agent = GatewayAgent(options, self.apply)
        self.metrics.control_moves = self._control_moves
        self.configured = False
        self.servers: list[asyncio.AbstractServer] = []
        self.bound: dict[str, int] = {}

    def apply(self, config: ProxyConfig) -> None:
        table = RouteTable.build(config, self.settings.node)
        self.relays.table = table
        if not self.configured:
            event(log, logging.INFO, "gateway configured", services=len(table.services))
        self.configured = True

    def _control_moves(self) -> int:
        channels = self.agent.channels
        return channels.replicas.moves if channels is not None else 0

    def _instances(self) -> dict[str, int]:
        table = self.relays.table
        if table is None:
            return {}
        out: dict[str, int] = {}
        for name, (service, _port) in table.services.items():
            out[service] = max(out.get(service, 0), len(set(table.local.get(name, ()))))
        return out

    def not_ready(self) -> list[str]:
        status = self.agent.status()
        missing = []
        if not status["spiffe_id"]:
            missing.append("certificate")
        if not status["registered"]:
            missing.append("registration")
        if not self.configured:
            missing.append("configuration")
        return missing

    async def admin(self, req: Request) -> Response:
        path = req.path.split(b"?", 1)[0]
        if req.method not in ("GET", "HEAD"):
            return Response(405, [(b"content-type", b"text/plain")], b"method not allowed\n")
        if path == b"/live":
            return Response(200, [(b"content-type", b"text/plain")], b"live\n")
        if path == b"/ready":
            missing = self.not_ready()
            body = {"ready": not missing, "missing": missing, **self.agent.status()}
            return _json(503 if missing else 200, body)
        if path == b"/routes":
            table = self.relays.table
            return _json(200, table.summary() if table is not None else {})
        if path == b"/metrics":
            return self._metrics()
        return Response(404, [(b"content-type", b"text/plain")], b"not found\n")

    def _metrics(self) -> Response:
        text = self.metrics.render().encode()
        return Response(200, [(b"content-type", b"text/plain; version=0.0.4")], text)

    async def metrics_only(self, req: Request) -> Response:
        """The metrics port: `GET /metrics` and nothing else (as the sidecar's 15090)."""
        if req.method in ("GET", "HEAD") and req.path.split(b"?", 1)[0] == b"/metrics":
            return self._metrics()
        return Response(404, [(b"content-type", b"text/plain")], b"not found\n")

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        host, port = parse_hostport(self.settings.listen, "--listen", listed=False)
        tracker = ConnectionTracker()
        admin_limit = ConnectionLimit(MAX_ADMIN_CONNECTIONS, evict_new=True)
        metrics_limit = ConnectionLimit(MAX_ADMIN_CONNECTIONS, evict_new=True)

        def admin_protocol() -> asyncio.Protocol:
            return Http1Server(self.admin, ConnectionInfo("admin"), tracker)

        def metrics_protocol() -> asyncio.Protocol:
            return Http1Server(self.metrics_only, ConnectionInfo("metrics"), tracker)

        opts = self.settings
        listeners = [
            ("gateway", self.relays.factory(), host, port),
            ("admin", admin_limit.wrap(admin_protocol), opts.admin_address, opts.admin_port),
        ]
        if opts.metrics_port:
            listeners.append(
                ("metrics", metrics_limit.wrap(metrics_protocol), opts.metrics_address,
                 opts.metrics_port)
            )  # fmt: skip
        for name, factory, address, number in listeners:
            try:
                server = await loop.create_server(factory, address, number, reuse_address=True,
                                                  backlog=1024)  # fmt: skip
            except OSError as exc:
                raise UsageError(
                    f"cannot listen on {address}:{number} ({name}): {exc.strerror}",
                    hint="choose another address or port with --listen / --admin-port / "
                    "--metrics-port",
                ) from None
            self.servers.append(server)
            self.bound[name] = server.sockets[0].getsockname()[1]
        self.relays.start()
        event(log, logging.INFO, "gateway listening", **self.bound)

    async def stop(self) -> None:
        await self.agent.stop()
        for server in self.servers:
            server.close()
        await self.relays.stop()


def _json(status: int, data: object) -> Response:
    body = json.dumps(data, indent=2, default=str).encode() + b"\n"
    return Response(status, [(b"content-type", b"application/json")], body)


async def _serve(settings: GatewaySettings, options: GatewayAgentOptions) -> None:
    gateway = Gateway(settings, options)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    loop.add_signal_handler(signal.SIGINT, stopping.set)
    try:
        await gateway.start()
        await start_unless_stopped(gateway.agent.start(), stopping)
        await stopping.wait()
        event(log, logging.INFO, "stopping")
    finally:
        await gateway.stop()


def run(settings: GatewaySettings) -> None:
    """Run the gateway in the foreground until SIGTERM or SIGINT."""
    options = agent_options(settings)
    setup_logging()
    raise_nofile_limit()
    import uvloop

    try:
        uvloop.run(_serve(settings, options))
    except GossamerError:
        raise
    except socket.gaierror as exc:
        raise UsageError(f"cannot resolve an address: {exc}") from None
