"""The sidecar process: from typed settings to a running sidecar until SIGTERM.

Control-plane mode (`control` and a join token): the sidecar listens at once (its admin
port, 127.0.0.1 by default, answers `/live`, and `/ready` says what is missing; the
metrics port serves `/metrics` only, on every interface), then the agent
(`agent/session.py`) certifies a fresh key with the token on the bootstrap port
(`bootstrap`, default each control host with port 15011), opens ADS and the
registration stream over mutual TLS, and renews the certificate before it expires.
`control` may list several replicas (`a:15012,b:15012`, preference order;
`agent/replicas.py`); `state_dir` keeps the identity and configuration across restarts
(`agent/state.py`; an unsafe directory is refused here, before anything listens). SIGTERM/SIGINT:
report `draining`, stop accepting, finish in-flight requests within `drain_timeout`,
deregister.

File mode (`static_config` with `cert`, `key`, `bundle`): for tests and benchmarks;
SIGHUP reloads the file and the certificates.

Telemetry comes from the environment (`telemetry/wiring.py`): OTEL_EXPORTER_OTLP_ENDPOINT
turns tracing on; GOSSAMER_ACCESS_LOG; `GOSSAMER_TELEMETRY=off` (or `no_telemetry`)
leaves out per-request metrics and spans. `gossamer proxy` (the CLI) only parses flags
into `ProxySettings` and calls `run`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gossamer.contract import limits as contract_limits
from gossamer.contract import ports
from gossamer.errors import ConfigError, GossamerError, UsageError
from gossamer.fdlimits import raise_nofile_limit
from gossamer.logs import event, setup_logging
from gossamer.proxy.agent.app_probe import ProbeSpec
from gossamer.proxy.agent.bootstrap import read_token_file
from gossamer.proxy.agent.replicas import bootstrap_addresses, expand, parse_addresses
from gossamer.proxy.agent.session import Agent, AgentOptions, start_unless_stopped
from gossamer.proxy.agent.state import StateDir
from gossamer.proxy.config import AppPort, InboundConfig, NodeInfo, Protocol, ProxyConfig
from gossamer.proxy.listeners import limits
from gossamer.proxy.listeners.dns import parse_upstreams
from gossamer.proxy.sidecar import Sidecar, SidecarOptions
from gossamer.proxy.static_config import load_config_file
from gossamer.proxy.telemetry.wiring import Telemetry
from gossamer.proxy.transport.http1.server import ServerLimits
from gossamer.proxy.transport.tls_contexts import Credentials
from gossamer.proxy.xds.translate import AppPortArg

log = logging.getLogger("gossamer.proxy")


@dataclass(frozen=True)
class ProxySettings:
    """Everything `gossamer proxy` takes: one field per flag, with the flag's default."""

    service: str | None = None
    app_ports: tuple[str, ...] = ()
    control: str | None = None
    bootstrap: str | None = None
    token: str | None = None
    token_file: Path | None = None
    namespace: str = "default"
    zone: str = ""
    node_name: str = ""
    instance_id: str | None = None
    service_version: str = ""  # spans' service.version (else $GOSSAMER_SERVICE_VERSION)
    advertise_address: str | None = None
    cert_ttl: int = 0
    state_dir: Path | None = None
    control_probe_interval: float = 30.0
    inbound_port: int = ports.INBOUND_PORT
    outbound_port: int = ports.OUTBOUND_PORT
    admin_port: int = ports.ADMIN_PORT
    inbound_address: str = "0.0.0.0"
    outbound_address: str = "127.0.0.1"
    admin_address: str = "127.0.0.1"
    metrics_port: int = ports.METRICS_PORT
    metrics_address: str = "0.0.0.0"
    dns_port: int = 0
    dns_upstream: str | None = None
    probe_path: str | None = None
    no_telemetry: bool = False
    static_config: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    bundle: Path | None = None
    trust_domain: str = "gossamer.local"
    header_timeout: float = 10.0
    idle_timeout: float = 120.0
    drain_timeout: float = 10.0
    drain_notice: float = 1.0
    hold: float = 5.0
    max_inbound_connections: int = limits.DEFAULT_MAX_INBOUND
    max_outbound_connections: int = limits.DEFAULT_MAX_OUTBOUND
    max_admin_connections: int = limits.DEFAULT_MAX_ADMIN
    handshake_timeout: float = limits.DEFAULT_HANDSHAKE_TIMEOUT
    max_pipelined_requests: int = contract_limits.PIPELINED_REQUESTS
    h2_max_concurrent_streams: int = contract_limits.H2_MAX_CONCURRENT_STREAMS


def parse_app_port(text: str) -> AppPortArg:
    """`PORT[/PROTOCOL]` or `SERVICE_PORT:APP_PORT[/PROTOCOL]` -> AppPortArg."""
    numbers_text, _, protocol = text.partition("/")
    service, sep, app = numbers_text.rpartition(":")
    numbers = [service, app] if sep else [app]
    if not all(n.isdigit() and 1 <= int(n) <= 65535 for n in numbers):
        raise UsageError(
            f"--app-port {text!r}: expected PORT, SERVICE_PORT:APP_PORT, with /http or /tcp"
        )
    protocol = protocol or "http"
    if protocol not in ("http", "tcp"):
        raise UsageError(f"--app-port {text!r}: protocol must be http or tcp")
    return AppPortArg(int(app), Protocol(protocol), int(service) if sep else None)


def run(settings: ProxySettings) -> None:
    """Run the sidecar in the foreground until SIGTERM or SIGINT."""
    if not settings.service:
        raise UsageError("--service is required", hint="gossamer proxy --service NAME ...")
    app_ports = tuple(parse_app_port(p) for p in settings.app_ports)
    node = NodeInfo(
        service=settings.service,
        namespace=settings.namespace,
        zone=settings.zone,
        node=settings.node_name,
        trust_domain=settings.trust_domain,
    )
    agent_options = None
    if settings.static_config is None:
        agent_options = _agent_options(settings, app_ports)
    setup_logging()
    _one_malloc_arena()
    soft, hard = raise_nofile_limit()
    event(log, logging.DEBUG, "open file limit", soft=soft, hard=hard)
    import uvloop

    uvloop.run(_serve(settings, node, app_ports, agent_options))


def _one_malloc_arena() -> None:
    """One glibc malloc arena for the whole process: the few helper threads (span
    export, bootstrap) would otherwise each keep an arena of their own, and the memory
    they held stays resident (a sidecar must stay small)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-8, 1)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass


TOKEN_FLAG_WARNING = (
    "warning: --token is deprecated: it puts the join token on the command line, where "
    "every local user can read it (ps); use --token-file FILE or $GOSSAMER_TOKEN"
)


def _token(settings: ProxySettings) -> str:
    """The join token ("" when none is given and a state directory may replace it)."""
    if settings.token:
        print(TOKEN_FLAG_WARNING, file=sys.stderr, flush=True)
    token = settings.token or os.environ.get("GOSSAMER_TOKEN")
    if not token and settings.token_file is not None:
        token = read_token_file(settings.token_file)
    if not settings.control or (not token and settings.state_dir is None):
        raise UsageError(
            "--control and a token (--token, --token-file or $GOSSAMER_TOKEN) are required",
            hint="or run from a file: --static-config FILE --cert F --key F --bundle F",
        )
    if not token:
        return ""  # the state directory must hold a usable identity (checked at start)
    from gossamer.certs.token_rules import parse_token

    parse_token(token)  # a malformed token fails here, before anything starts
    return token


def _agent_options(settings: ProxySettings, app_ports: tuple[AppPortArg, ...]) -> AgentOptions:
    control = expand(parse_addresses(settings.control, "--control")) if settings.control else ()
    token = _token(settings)
    bootstrap = (
        expand(parse_addresses(settings.bootstrap, "--bootstrap"))
        if settings.bootstrap
        else bootstrap_addresses(control, ports.BOOTSTRAP_PORT)
    )
    if settings.state_dir is not None:
        StateDir.open(settings.state_dir)  # refused here, before anything listens
    instance = settings.instance_id or f"{socket.gethostname()}-{settings.inbound_port}"
    return AgentOptions(
        control=control,
        bootstrap=bootstrap,
        token=token,
        instance_id=instance,
        app_ports=app_ports,
        cert_ttl=settings.cert_ttl,
        address=settings.advertise_address or "",
        drain_notice=settings.drain_notice,
        state_dir=settings.state_dir,
        probe_interval=settings.control_probe_interval,
    )


def _telemetry(
    service: str, namespace: str, instance: str, node: str = "", version: str = ""
) -> Telemetry:
    from gossamer.proxy.telemetry.otlp_export import OtlpGrpcExporter
    from gossamer.proxy.telemetry.trace_export import TracingSettings

    env: Mapping[str, str] = os.environ
    if version:
        env = {**os.environ, "GOSSAMER_SERVICE_VERSION": version}
    settings = TracingSettings.from_env(
        env, service=service, namespace=namespace, instance=instance, node=node
    )
    exporter = None
    if settings.enabled and settings.endpoint:
        exporter = OtlpGrpcExporter(
            settings.endpoint, insecure=settings.insecure, loop=asyncio.get_running_loop()
        )
    return Telemetry.from_env(
        env, service=service, namespace=namespace, instance=instance, node=node,
        span_exporter=exporter,
    )  # fmt: skip


def _options(settings: ProxySettings, node: NodeInfo, probe_port: int | None) -> SidecarOptions:
    probe = None
    if probe_port:
        probe = ProbeSpec(port=probe_port, path=settings.probe_path or None)
    telemetry_off = os.environ.get("GOSSAMER_TELEMETRY", "").strip().lower() in ("off", "0")
    return SidecarOptions(
        node=node,
        outbound_port=settings.outbound_port,
        inbound_port=settings.inbound_port,
        admin_port=settings.admin_port,
        outbound_address=settings.outbound_address,
        inbound_address=settings.inbound_address,
        admin_address=settings.admin_address,
        metrics_port=settings.metrics_port,
        metrics_address=settings.metrics_address,
        dns_port=settings.dns_port,
        dns_upstreams=tuple(parse_upstreams(settings.dns_upstream))
        if settings.dns_upstream
        else (),
        probe=probe,
        drain_timeout=settings.drain_timeout,
        hold_until_ready=settings.hold,
        limits=ServerLimits(
            header_timeout=settings.header_timeout,
            idle_timeout=settings.idle_timeout,
            pipeline_depth=settings.max_pipelined_requests,
            h2_max_concurrent_streams=settings.h2_max_concurrent_streams,
        ),
        connections=limits.ListenerLimits(
            inbound=settings.max_inbound_connections,
            outbound=settings.max_outbound_connections,
            admin=settings.max_admin_connections,
            metrics=settings.max_admin_connections,
            handshake_timeout=settings.handshake_timeout,
        ),
        telemetry=not (settings.no_telemetry or telemetry_off),
    )


async def _serve(
    settings: ProxySettings,
    node: NodeInfo,
    app_ports: tuple[AppPortArg, ...],
    agent_options: AgentOptions | None,
) -> None:
    config = credentials = None
    probe_port = app_ports[0].port if app_ports else None
    static = settings.static_config
    if static is not None:
        config, credentials = _load(settings, node, static, app_ports)
        if config.inbound.app_ports:  # the file's first app port is probed
            probe_port = config.inbound.app_ports[0].local_port
    options = _options(settings, node, probe_port)
    instance = agent_options.instance_id if agent_options is not None else ""
    telemetry = _telemetry(
        node.service, node.namespace, instance, node.node, settings.service_version
    )
    sidecar = Sidecar(options, credentials=credentials, config=config, telemetry=telemetry)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    loop.add_signal_handler(signal.SIGINT, stopping.set)
    agent = None
    try:
        await sidecar.start()
        if static is not None:
            loop.add_signal_handler(
                signal.SIGHUP, lambda: _reload(settings, node, static, app_ports, sidecar)
            )
        elif agent_options is not None:
            agent = Agent(sidecar, agent_options)
            await start_unless_stopped(agent.start(), stopping)
        await stopping.wait()
        event(log, logging.INFO, "stopping", drain_timeout=options.drain_timeout)
    finally:
        if agent is not None:
            await agent.stop()
        else:
            await sidecar.stop()
        await asyncio.to_thread(telemetry.close)


def _read(path: Path | None, what: str, flag: str) -> bytes:
    if path is None:
        raise UsageError(f"{flag} is required with --static-config", hint=f"give the {what} file")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} {path}: {exc.strerror}") from None


def _load(
    settings: ProxySettings, node: NodeInfo, static: Path, app_ports: tuple[AppPortArg, ...]
) -> tuple[ProxyConfig, Credentials]:
    config = load_config_file(static, default_node=node)
    if config.node.service != node.service:
        raise ConfigError(
            f"the file configures service {config.node.service!r}, not {node.service!r}",
            source=str(static),
            field="node.service",
        )
    if app_ports and not config.inbound.app_ports:
        inbound = InboundConfig(
            app_ports=tuple(
                AppPort(a.service_port or a.port, a.protocol, target_port=a.port) for a in app_ports
            ),
            authorization=config.inbound.authorization,
        )
        config = dataclasses.replace(config, inbound=inbound)
    credentials = Credentials(
        chain_pem=_read(settings.cert, "certificate chain", "--cert"),
        key_pem=_read(settings.key, "private key", "--key"),
        bundle_pem=_read(settings.bundle, "trust bundle", "--bundle"),
    )
    return config, credentials


def _reload(
    settings: ProxySettings,
    node: NodeInfo,
    static: Path,
    app_ports: tuple[AppPortArg, ...],
    sidecar: Sidecar,
) -> None:
    try:
        new_config, new_credentials = _load(settings, node, static, app_ports)
        sidecar.rotate(new_credentials)
        sidecar.apply(new_config)
    except GossamerError as exc:
        event(log, logging.ERROR, "reload rejected; keeping the current configuration",
              error=exc.message)  # fmt: skip
