"""Running `gossamer proxy`: from the control plane (the normal mode) or from a file.

Control-plane mode (`--control HOST:PORT` and a join token): the sidecar listens at
once (its admin port answers `/live`, and `/ready` says what is missing), then the
agent (proxy/agent/session.py) certifies a fresh key with the token on the bootstrap port
(`--bootstrap`, default the --control host with port 15011), opens ADS and the
registration stream over mutual TLS, and renews the certificate before it expires.
SIGTERM/SIGINT: report `draining`, stop accepting, finish in-flight requests within
`--drain-timeout`, deregister.

File mode (`--static-config FILE --cert --key --bundle`): for tests and benchmarks;
SIGHUP reloads the file and the certificates.

Telemetry comes from the environment (proxy/telemetry/wiring.py): OTEL_EXPORTER_OTLP_ENDPOINT
turns tracing on; GOSSAMER_ACCESS_LOG; `GOSSAMER_TELEMETRY=off` (or `--no-telemetry`)
leaves out per-request metrics and spans.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from pathlib import Path
from typing import Any

from gossamer.errors import ConfigError, GossamerError, UsageError

BOOTSTRAP_PORT = 15011
log = logging.getLogger("gossamer.proxy")


def parse_app_port(text: str) -> Any:
    """`PORT[/PROTOCOL]` or `SERVICE_PORT:APP_PORT[/PROTOCOL]` -> AppPortArg."""
    from gossamer.proxy.config import Protocol
    from gossamer.proxy.xds.translate import AppPortArg

    ports, _, protocol = text.partition("/")
    service, sep, app = ports.rpartition(":")
    numbers = [service, app] if sep else [app]
    if not all(n.isdigit() and 1 <= int(n) <= 65535 for n in numbers):
        raise UsageError(
            f"--app-port {text!r}: expected PORT, SERVICE_PORT:APP_PORT, with /http or /tcp"
        )
    protocol = protocol or "http"
    if protocol not in ("http", "tcp"):
        raise UsageError(f"--app-port {text!r}: protocol must be http or tcp")
    return AppPortArg(int(app), Protocol(protocol), int(service) if sep else None)


def parse_hostport(text: str, flag: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise UsageError(f"{flag} {text!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


def _read(path: object, what: str, flag: str) -> bytes:
    if not isinstance(path, Path):
        raise UsageError(f"{flag} is required with --static-config", hint=f"give the {what} file")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} {path}: {exc.strerror}") from None


def run(opts: dict[str, Any]) -> None:
    from gossamer.logs import setup_logging
    from gossamer.proxy.config import NodeInfo

    service = opts["service"]
    if not service:
        raise UsageError("--service is required", hint="gossamer proxy --service NAME ...")
    app_ports = tuple(parse_app_port(p) for p in opts["app_ports"])
    node = NodeInfo(
        service=str(service),
        namespace=str(opts["namespace"]),
        zone=str(opts["zone"]),
        node=str(opts["node_name"]),
        trust_domain=str(opts["trust_domain"]),
    )
    static = opts["static_config"]
    agent_options = None
    if not isinstance(static, Path):
        agent_options = _agent_options(opts, app_ports)
    setup_logging()
    _one_malloc_arena()
    import uvloop

    uvloop.run(_serve(opts, node, app_ports, static, agent_options))


def _one_malloc_arena() -> None:
    """One glibc malloc arena for the whole process: the few helper threads (span
    export, bootstrap) would otherwise each keep an arena of their own, and the memory
    they held stays resident (a sidecar must stay small)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-8, 1)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass


def _token(opts: dict[str, Any]) -> str:
    token = opts["token"] or os.environ.get("GOSSAMER_TOKEN")
    token_file = opts["token_file"]
    if not token and isinstance(token_file, Path):
        try:
            token = token_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read the token file {token_file}: {exc.strerror}") from None
    if not opts["control"] or not token:
        raise UsageError(
            "--control and a token (--token, --token-file or $GOSSAMER_TOKEN) are required",
            hint="or run from a file: --static-config FILE --cert F --key F --bundle F",
        )
    from gossamer.certs.tokens import parse_token

    parse_token(str(token))  # a malformed token fails here, before anything starts
    return str(token)


def _agent_options(opts: dict[str, Any], app_ports: tuple[Any, ...]) -> Any:
    from gossamer.proxy.agent.session import AgentOptions

    token = _token(opts)
    control = parse_hostport(str(opts["control"]), "--control")
    bootstrap = (
        parse_hostport(str(opts["bootstrap"]), "--bootstrap")
        if opts["bootstrap"]
        else (control[0], BOOTSTRAP_PORT)
    )
    instance = opts["instance_id"] or f"{socket.gethostname()}-{opts['inbound_port']}"
    return AgentOptions(
        control=control,
        bootstrap=bootstrap,
        token=token,
        instance_id=str(instance),
        app_ports=app_ports,
        cert_ttl=int(opts["cert_ttl"] or 0),
        address=str(opts["advertise_address"] or ""),
        drain_notice=float(opts["drain_notice"]),
    )


def _telemetry(opts: dict[str, Any], service: str, namespace: str, instance: str) -> Any:
    from gossamer.proxy.telemetry.otlp_export import OtlpGrpcExporter
    from gossamer.proxy.telemetry.trace_export import TracingSettings
    from gossamer.proxy.telemetry.wiring import Telemetry

    env = os.environ
    settings = TracingSettings.from_env(
        env, service=service, namespace=namespace, instance=instance
    )
    exporter = None
    if settings.enabled and settings.endpoint:
        exporter = OtlpGrpcExporter(
            settings.endpoint, insecure=settings.insecure, loop=asyncio.get_running_loop()
        )
    return Telemetry.from_env(
        env, service=service, namespace=namespace, instance=instance, span_exporter=exporter
    )


def _options(opts: dict[str, Any], node: Any, probe_port: int | None) -> Any:
    from gossamer.proxy.agent.app_probe import ProbeSpec
    from gossamer.proxy.sidecar import SidecarOptions
    from gossamer.proxy.transport.http1.server import ServerLimits

    probe = None
    if probe_port:
        path = opts["probe_path"]
        probe = ProbeSpec(port=probe_port, path=str(path) if path else None)
    telemetry_off = os.environ.get("GOSSAMER_TELEMETRY", "").strip().lower() in ("off", "0")
    return SidecarOptions(
        node=node,
        outbound_port=int(opts["outbound_port"]),
        inbound_port=int(opts["inbound_port"]),
        admin_port=int(opts["admin_port"]),
        outbound_address=str(opts["outbound_address"]),
        inbound_address=str(opts["inbound_address"]),
        admin_address=str(opts["admin_address"]),
        probe=probe,
        drain_timeout=float(opts["drain_timeout"]),
        hold_until_ready=float(opts["hold"]),
        limits=ServerLimits(
            header_timeout=float(opts["header_timeout"]),
            idle_timeout=float(opts["idle_timeout"]),
        ),
        telemetry=not (opts["no_telemetry"] or telemetry_off),
    )


async def _serve(
    opts: dict[str, Any],
    node: Any,
    app_ports: tuple[Any, ...],
    static: Path | None,
    agent_options: Any,
) -> None:
    from gossamer.logs import event
    from gossamer.proxy.sidecar import Sidecar

    config = credentials = None
    probe_port = app_ports[0].port if app_ports else None
    if static is not None:
        config, credentials = _load(opts, node, static, app_ports)
        if config.inbound.app_ports:  # the file's first app port is probed
            probe_port = config.inbound.app_ports[0].local_port
    options = _options(opts, node, probe_port)
    instance = agent_options.instance_id if agent_options is not None else ""
    telemetry = _telemetry(opts, node.service, node.namespace, instance)
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
                signal.SIGHUP, lambda: _reload(opts, node, static, app_ports, sidecar)
            )
        else:
            from gossamer.proxy.agent.session import Agent

            agent = Agent(sidecar, agent_options)
            starting = asyncio.ensure_future(agent.start())
            await asyncio.wait({starting, asyncio.ensure_future(stopping.wait())},
                               return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
            if not starting.done():
                starting.cancel()
            else:
                starting.result()  # a refused token ends here, with the reason
        await stopping.wait()
        event(log, logging.INFO, "stopping", drain_timeout=options.drain_timeout)
    finally:
        if agent is not None:
            await agent.stop()
        else:
            await sidecar.stop()
        await asyncio.to_thread(telemetry.close)


def _load(
    opts: dict[str, Any], node: Any, static: Path, app_ports: tuple[Any, ...]
) -> tuple[Any, Any]:
    from gossamer.proxy.config import AppPort, InboundConfig, ProxyConfig
    from gossamer.proxy.static_config import load_config_file
    from gossamer.proxy.transport.tls_contexts import Credentials

    config: ProxyConfig = load_config_file(static, default_node=node)
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
        import dataclasses

        config = dataclasses.replace(config, inbound=inbound)
    credentials = Credentials(
        chain_pem=_read(opts["cert"], "certificate chain", "--cert"),
        key_pem=_read(opts["key"], "private key", "--key"),
        bundle_pem=_read(opts["bundle"], "trust bundle", "--bundle"),
    )
    return config, credentials


def _reload(
    opts: dict[str, Any], node: Any, static: Path, app_ports: tuple[Any, ...], sidecar: Any
) -> None:
    from gossamer.logs import event

    try:
        new_config, new_credentials = _load(opts, node, static, app_ports)
        sidecar.rotate(new_credentials)
        sidecar.apply(new_config)
    except GossamerError as exc:
        event(log, logging.ERROR, "reload rejected; keeping the current configuration",
              error=exc.message)  # fmt: skip
