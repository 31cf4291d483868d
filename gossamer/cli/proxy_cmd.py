"""`gossamer proxy`: run a sidecar; `gossamer proxy iptables install|remove`.

Run without a subcommand, the group runs the sidecar in the foreground until SIGTERM or
SIGINT (then it stops accepting and lets in-flight requests finish). Until the xDS
client lands, the sidecar runs from `--static-config FILE` with certificate files
(`--cert`, `--key`, `--bundle`); SIGHUP reloads all of them (a configuration swap and a
certificate rotation, as the control plane would push them).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import click

from gossamer.errors import ConfigError, GossamerError, UsageError

DEFAULT_PROXY_UID = 1337


def _parse_app_port(text: str) -> tuple[int, str]:
    port, _, protocol = text.partition("/")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise UsageError(f"--app-port {text!r}: expected PORT or PORT/PROTOCOL (http, tcp)")
    protocol = protocol or "http"
    if protocol not in ("http", "tcp"):
        raise UsageError(f"--app-port {text!r}: protocol must be http or tcp")
    return int(port), protocol


def _read(path: Path | None, what: str, flag: str) -> bytes:
    if path is None:
        raise UsageError(f"{flag} is required with --static-config", hint=f"give the {what} file")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} {path}: {exc.strerror}") from None


@click.group(invoke_without_command=True)
@click.option("--service", help="The service this sidecar runs beside.")
@click.option(
    "--app-port", "app_ports", multiple=True, help="App port, PORT[/http|tcp]; repeatable."
)
@click.option("--control", help="Control plane address HOST:PORT.")
@click.option("--token", help="Join token (also $GOSSAMER_TOKEN).")
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File with the join token.",
)
@click.option("--namespace", default="default", show_default=True)
@click.option("--zone", default="", help="Locality zone of this instance.")
@click.option("--node", "node_name", default="", help="Node (host) name of this instance.")
@click.option("--inbound-port", type=click.IntRange(0, 65535), default=15006, show_default=True)
@click.option("--outbound-port", type=click.IntRange(0, 65535), default=15001, show_default=True)
@click.option("--admin-port", type=click.IntRange(0, 65535), default=15000, show_default=True)
@click.option("--inbound-address", default="0.0.0.0", show_default=True)
@click.option("--outbound-address", default="127.0.0.1", show_default=True)
@click.option("--admin-address", default="0.0.0.0", show_default=True)
@click.option("--probe-path", help="HTTP path probed for app readiness (default: TCP connect).")
@click.option(
    "--static-config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Run from this YAML/JSON configuration instead of the control plane.",
)
@click.option(
    "--cert",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Certificate chain PEM (with --static-config).",
)
@click.option(
    "--key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Private key PEM (with --static-config).",
)
@click.option(
    "--bundle",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Trust bundle PEM (with --static-config).",
)
@click.option("--trust-domain", default="gossamer.local", show_default=True)
@click.option(
    "--header-timeout",
    type=float,
    default=10.0,
    show_default=True,
    help="Seconds a client gets to send a request head (then 408).",
)
@click.option(
    "--idle-timeout",
    type=float,
    default=120.0,
    show_default=True,
    help="Seconds an idle keep-alive connection is kept.",
)
@click.option(
    "--drain-timeout",
    type=float,
    default=10.0,
    show_default=True,
    help="Seconds in-flight requests get at shutdown.",
)
@click.pass_context
def proxy(ctx: click.Context, /, **opts: object) -> None:
    """Run a sidecar proxy beside SERVICE (or manage iptables, see the subcommand)."""
    if ctx.invoked_subcommand is not None:
        return
    _run(opts)


def _run(opts: dict[str, object]) -> None:
    from gossamer.logs import setup_logging
    from gossamer.proxy.config import NodeInfo

    service = opts["service"]
    if not service:
        raise UsageError("--service is required", hint="gossamer proxy --service NAME ...")
    token = opts["token"] or os.environ.get("GOSSAMER_TOKEN")
    token_file = opts["token_file"]
    if not token and isinstance(token_file, Path):
        token = _read(token_file, "token", "--token-file").decode().strip()
    static = opts["static_config"]
    if not isinstance(static, Path):
        if not opts["control"] or not token:
            raise UsageError(
                "--control and a token (--token, --token-file or $GOSSAMER_TOKEN) are required",
                hint="or run from a file: --static-config FILE --cert F --key F --bundle F",
            )
        raise UsageError(
            "connecting to the control plane is not available in this build yet",
            hint="run from a file: --static-config FILE --cert F --key F --bundle F",
        )
    ports = [_parse_app_port(p) for p in opts["app_ports"]]  # type: ignore[attr-defined]
    node = NodeInfo(
        service=str(service),
        namespace=str(opts["namespace"]),
        zone=str(opts["zone"]),
        node=str(opts["node_name"]),
        trust_domain=str(opts["trust_domain"]),
    )
    setup_logging()
    import uvloop

    uvloop.run(_serve(opts, node, static, ports))


def _load(
    opts: dict[str, object], node: object, static: Path, ports: list[tuple[int, str]]
) -> tuple[object, object]:
    from gossamer.proxy.config import AppPort, InboundConfig, NodeInfo, Protocol, ProxyConfig
    from gossamer.proxy.static_config import load_config_file
    from gossamer.proxy.tls import Credentials

    assert isinstance(node, NodeInfo)
    config = load_config_file(static, default_node=node)
    if config.node.service != node.service:
        raise ConfigError(
            f"the file configures service {config.node.service!r}, not {node.service!r}",
            source=str(static),
            field="node.service",
        )
    if ports and not config.inbound.app_ports:
        inbound = InboundConfig(
            app_ports=tuple(AppPort(p, Protocol(proto)) for p, proto in ports),
            authorization=config.inbound.authorization,
        )
        config = ProxyConfig(
            node=config.node,
            listeners=config.listeners,
            inbound=inbound,
            routes=config.routes,
            clusters=config.clusters,
            endpoints=config.endpoints,
            versions=config.versions,
        )
    credentials = Credentials(
        chain_pem=_read(opts["cert"], "certificate chain", "--cert"),  # type: ignore[arg-type]
        key_pem=_read(opts["key"], "private key", "--key"),  # type: ignore[arg-type]
        bundle_pem=_read(opts["bundle"], "trust bundle", "--bundle"),  # type: ignore[arg-type]
    )
    return config, credentials


async def _serve(
    opts: dict[str, object], node: object, static: Path, ports: list[tuple[int, str]]
) -> None:
    import asyncio
    import logging

    from gossamer.logs import event
    from gossamer.proxy.config import NodeInfo, ProxyConfig
    from gossamer.proxy.http1.server import ServerLimits
    from gossamer.proxy.probe import ProbeSpec
    from gossamer.proxy.sidecar import Sidecar, SidecarOptions
    from gossamer.proxy.tls import Credentials

    assert isinstance(node, NodeInfo)
    log = logging.getLogger("gossamer.proxy")
    config, credentials = _load(opts, node, static, ports)
    assert isinstance(config, ProxyConfig) and isinstance(credentials, Credentials)
    app_ports = [ap.local_port for ap in config.inbound.app_ports] or [p for p, _ in ports]
    probe = None
    if app_ports:
        path = opts["probe_path"]
        probe = ProbeSpec(port=app_ports[0], path=str(path) if path else None)
    options = SidecarOptions(
        node=node,
        outbound_port=int(opts["outbound_port"]),  # type: ignore[call-overload]
        inbound_port=int(opts["inbound_port"]),  # type: ignore[call-overload]
        admin_port=int(opts["admin_port"]),  # type: ignore[call-overload]
        outbound_address=str(opts["outbound_address"]),
        inbound_address=str(opts["inbound_address"]),
        admin_address=str(opts["admin_address"]),
        probe=probe,
        drain_timeout=float(opts["drain_timeout"]),  # type: ignore[arg-type]
        limits=ServerLimits(
            header_timeout=float(opts["header_timeout"]),  # type: ignore[arg-type]
            idle_timeout=float(opts["idle_timeout"]),  # type: ignore[arg-type]
        ),
    )
    sidecar = Sidecar(options, credentials=credentials, config=config)
    await sidecar.start()
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()

    def reload() -> None:
        try:
            new_config, new_credentials = _load(opts, node, static, ports)
            sidecar.rotate(new_credentials)  # type: ignore[arg-type]
            sidecar.apply(new_config)  # type: ignore[arg-type]
        except GossamerError as exc:
            event(
                log,
                logging.ERROR,
                "reload rejected; keeping the current configuration",
                error=exc.message,
            )

    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    loop.add_signal_handler(signal.SIGINT, stopping.set)
    loop.add_signal_handler(signal.SIGHUP, reload)
    await stopping.wait()
    event(log, logging.INFO, "stopping", drain_timeout=options.drain_timeout)
    await sidecar.stop()


@proxy.group()
def iptables() -> None:
    """Transparent mode: redirect this network namespace's TCP through the sidecar."""


def _spec_options(func: click.decorators.FC) -> click.decorators.FC:
    for option in reversed(
        [
            click.option(
                "--proxy-uid",
                type=int,
                default=lambda: int(os.environ.get("GOSSAMER_PROXY_UID", DEFAULT_PROXY_UID)),
                show_default=str(DEFAULT_PROXY_UID),
                help="UID the sidecar runs as (its traffic is not redirected).",
            ),
            click.option(
                "--inbound-port", type=click.IntRange(1, 65535), default=15006, show_default=True
            ),
            click.option(
                "--outbound-port", type=click.IntRange(1, 65535), default=15001, show_default=True
            ),
            click.option(
                "--admin-port", type=click.IntRange(1, 65535), default=15000, show_default=True
            ),
            click.option(
                "--exclude-inbound-ports",
                default="",
                help="Comma-separated ports not redirected inbound.",
            ),
            click.option(
                "--exclude-outbound-ports",
                default="",
                help="Comma-separated ports not redirected outbound.",
            ),
            click.option("--no-inbound", is_flag=True, help="Redirect outbound traffic only."),
            click.option(
                "--dry-run", is_flag=True, help="Print the commands instead of running them."
            ),
        ]
    ):
        func = option(func)
    return func


def _ports(text: str, flag: str) -> tuple[int, ...]:
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        if not part.isdigit() or not 1 <= int(part) <= 65535:
            raise UsageError(f"{flag}: {part!r} is not a port")
        out.append(int(part))
    return tuple(out)


@iptables.command()
@_spec_options
def install(
    proxy_uid: int,
    inbound_port: int,
    outbound_port: int,
    admin_port: int,
    exclude_inbound_ports: str,
    exclude_outbound_ports: str,
    no_inbound: bool,
    dry_run: bool,
) -> None:
    """Install the REDIRECT rules (replacing earlier ones)."""
    from gossamer.proxy import transparent as ipt

    spec = ipt.InterceptSpec(
        proxy_uid=proxy_uid,
        inbound_port=inbound_port,
        outbound_port=outbound_port,
        admin_port=admin_port,
        exclude_inbound_ports=_ports(exclude_inbound_ports, "--exclude-inbound-ports"),
        exclude_outbound_ports=_ports(exclude_outbound_ports, "--exclude-outbound-ports"),
        intercept_inbound=not no_inbound,
    )
    if dry_run:
        for cmd in ipt.install_commands(spec):
            click.echo(" ".join(cmd))
        return
    cmds = ipt.install(spec)
    click.echo(f"installed {len(cmds)} iptables rules (proxy uid {proxy_uid})")


@iptables.command()
def remove() -> None:
    """Remove the rules `install` added."""
    from gossamer.proxy import transparent as ipt

    changed = ipt.remove()
    click.echo(
        "removed the gossamer iptables rules" if changed else "no gossamer rules were installed"
    )
