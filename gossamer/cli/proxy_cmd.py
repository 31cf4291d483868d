"""`gossamer proxy`: run a sidecar; `gossamer proxy iptables install|remove`.

Run without a subcommand, the group runs the sidecar in the foreground until SIGTERM or
SIGINT (then it reports draining, stops accepting, lets in-flight requests finish and
deregisters). This module only parses the flags into `ProxySettings`; the sidecar
process itself is `gossamer.proxy.main` (from the control plane with `--control` and a
join token, or from a file with `--static-config` and certificate files, for tests and
benchmarks; SIGHUP reloads them).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from gossamer.contract import limits, ports
from gossamer.contract.identity import check_label
from gossamer.errors import ConfigError, UsageError

DEFAULT_PROXY_UID = 1337


def node_label(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """`--node`: empty or a DNS-1123 label (it travels in xDS node metadata)."""
    if not value:
        return value
    try:
        return check_label(value, "--node")
    except ConfigError as exc:
        raise click.BadParameter(exc.message) from None


@click.group(invoke_without_command=True)
@click.option("--service", help="The service this sidecar runs beside.")
@click.option(
    "--app-port",
    "app_ports",
    multiple=True,
    help="Where the app listens: PORT[/http|tcp], or SERVICE_PORT:APP_PORT[/http|tcp] when "
    "it listens on another port than the service port peers call; repeatable. The first "
    "one is probed for readiness.",
)
@click.option(
    "--control",
    help="Control plane address HOST:PORT (its xds_listen port: mutual TLS, 15012 by "
    "default), or several replicas' as HOST:PORT,HOST:PORT,... in preference order (this "
    "node's first), or a name resolving to several addresses. The sidecar moves to the "
    "next replica when its replica fails, and back when the first answers again.",
)
@click.option(
    "--bootstrap",
    help="Control plane bootstrap address(es) HOST:PORT[,HOST:PORT...], where the join token "
    "is exchanged for the first certificate, tried in turn [default: each --control host, "
    "port 15011].",
)
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    help="Directory (created 0700, the sidecar user's own) where the sidecar keeps its "
    "certificate, key and last accepted configuration, so a restart serves at once even "
    "with no control plane up. A usable identity there replaces the join token.",
)
@click.option(
    "--control-probe-interval",
    type=click.FloatRange(0.1),
    default=30.0,
    show_default=True,
    help="Seconds between probes of the preferred control-plane replica while the sidecar "
    "uses another one (jittered by 20%).",
)
@click.option(
    "--token",
    help="Deprecated: the join token on the command line, visible to every local user "
    "in ps. Use --token-file or $GOSSAMER_TOKEN.",
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File with the join token (or the token in $GOSSAMER_TOKEN).",
)
@click.option("--namespace", default="default", show_default=True)
@click.option("--zone", default="", help="Locality zone of this instance.")
@click.option(
    "--node",
    "node_name",
    default="",
    callback=node_label,
    help="Node (host) name of this instance (a DNS-1123 label).",
)
@click.option(
    "--instance-id", help="Unique id of this instance in its service [default: HOST-INBOUNDPORT]."
)
@click.option(
    "--service-version",
    default="",
    envvar="GOSSAMER_SERVICE_VERSION",
    help="This instance's version, as its spans' service.version ($GOSSAMER_SERVICE_VERSION).",
)
@click.option(
    "--advertise-address",
    help="Address peers reach this instance at [default: the one the control plane sees]. "
    "Another address is accepted only if the join token allows it (token create "
    "--allow-address).",
)
@click.option(
    "--cert-ttl",
    type=click.IntRange(0),
    default=0,
    help="Certificate lifetime to ask for, in seconds [default: the control plane's, 24 h].",
)
@click.option(
    "--inbound-port", type=click.IntRange(0, 65535), default=ports.INBOUND_PORT, show_default=True
)
@click.option(
    "--outbound-port", type=click.IntRange(0, 65535), default=ports.OUTBOUND_PORT, show_default=True
)
@click.option(
    "--admin-port", type=click.IntRange(0, 65535), default=ports.ADMIN_PORT, show_default=True
)
@click.option("--inbound-address", default="0.0.0.0", show_default=True)
@click.option("--outbound-address", default="127.0.0.1", show_default=True)
@click.option(
    "--admin-address",
    default="127.0.0.1",
    show_default=True,
    help="Address of the admin port (/ready, /config_dump, /clusters, /metrics): loopback, "
    "so only this network namespace (health checks run there) sees the sidecar's "
    "policies and endpoints. In transparent mode a connection to it from outside lands "
    "on the inbound port whatever this says.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=ports.METRICS_PORT,
    show_default=True,
    help="Port serving GET /metrics only, registered for Prometheus (http_sd) and the "
    "control plane to scrape; 0: none.",
)
@click.option("--metrics-address", default="0.0.0.0", show_default=True)
@click.option(
    "--dns-port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help=f"Port (UDP and TCP, on 127.0.0.1) of the sidecar's DNS for its app: names of mesh "
    f"services with no instance on this node get a virtual IP the sidecar routes, other "
    f"queries go to the resolvers of /etc/resolv.conf. Transparent mode redirects the "
    f"app's DNS there (iptables install --dns-port); 0: none. Compose and gossamer up "
    f"--isolate use {ports.DNS_PORT}.",
)
@click.option(
    "--dns-upstream",
    help="Resolvers the DNS forwards to, IP[:PORT][,IP[:PORT]...] [default: the "
    "nameservers of /etc/resolv.conf].",
)
@click.option("--probe-path", help="HTTP path probed for app readiness (default: TCP connect).")
@click.option(
    "--no-telemetry",
    is_flag=True,
    help="No per-request metrics, spans or access logs (also GOSSAMER_TELEMETRY=off).",
)
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
@click.option(
    "--trust-domain",
    default="gossamer.local",
    show_default=True,
    help="With --static-config (the control plane's certificate says it otherwise).",
)
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
@click.option(
    "--drain-notice",
    type=float,
    default=1.0,
    show_default=True,
    help="Seconds between reporting `draining` and closing the listeners at shutdown.",
)
@click.option(
    "--hold-requests-until-ready",
    "hold",
    type=click.FloatRange(0),
    default=5.0,
    show_default=True,
    help="Seconds a request waits for what it lacks before a 503: outbound, the first "
    "configuration (then `no-config`); inbound, the app accepting connections (then "
    "`app-not-ready`). 0 fails at once.",
)
@click.option(
    "--max-inbound-connections",
    type=click.IntRange(0),
    default=limits.MAX_INBOUND_CONNECTIONS,
    show_default=True,
    help="Connections the inbound port holds (0: no cap). At the cap a new one takes the "
    "place of the oldest connection still in its TLS handshake, or is closed.",
)
@click.option(
    "--max-outbound-connections",
    type=click.IntRange(0),
    default=limits.MAX_OUTBOUND_CONNECTIONS,
    show_default=True,
    help="Connections the outbound port holds (0: no cap); over it new ones are closed.",
)
@click.option(
    "--max-admin-connections",
    type=click.IntRange(0),
    default=limits.MAX_ADMIN_CONNECTIONS,
    show_default=True,
    help="Connections the admin port holds, and the metrics port (0: no cap); a new one "
    "displaces the oldest.",
)
@click.option(
    "--handshake-timeout",
    type=click.FloatRange(0, min_open=True),
    default=limits.HANDSHAKE_TIMEOUT,
    show_default=True,
    help="Seconds from accept a peer gets to finish the inbound TLS handshake.",
)
@click.option(
    "--max-pipelined-requests",
    type=click.IntRange(1, 1024),
    default=limits.PIPELINED_REQUESTS,
    show_default=True,
    help="HTTP/1.1 requests a connection may have parsed and not yet answered; past it "
    "the sidecar stops reading that connection until an answer has gone out.",
)
@click.option(
    "--h2-max-concurrent-streams",
    type=click.IntRange(1, 65535),
    default=limits.H2_MAX_CONCURRENT_STREAMS,
    show_default=True,
    help="HTTP/2 streams in progress per downstream connection (advertised in SETTINGS); "
    "more are refused with REFUSED_STREAM.",
)
@click.pass_context
def proxy(ctx: click.Context, /, **opts: Any) -> None:
    """Run a sidecar proxy beside SERVICE (or manage iptables, see the subcommand).

    \b
    gossamer proxy --service web --app-port 8080 --control HOST:15012 --token-file F
    """
    if ctx.invoked_subcommand is not None:
        return
    from gossamer.proxy.main import ProxySettings, run

    run(ProxySettings(**opts))


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
                "--inbound-port",
                type=click.IntRange(1, 65535),
                default=ports.INBOUND_PORT,
                show_default=True,
            ),
            click.option(
                "--outbound-port",
                type=click.IntRange(1, 65535),
                default=ports.OUTBOUND_PORT,
                show_default=True,
            ),
            click.option(
                "--metrics-port",
                type=click.IntRange(0, 65535),
                default=ports.METRICS_PORT,
                show_default=True,
                help="The sidecar's metrics port: not redirected inbound, so Prometheus "
                "reaches it (0: none). The admin port is redirected like the app's.",
            ),
            click.option("--admin-port", hidden=True, help="Ignored (no longer exempt)."),
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
            click.option(
                "--dns-port",
                type=click.IntRange(0, 65535),
                default=0,
                show_default=True,
                help="Also redirect the app's DNS (UDP and TCP port 53) to the sidecar's DNS "
                f"on this port (gossamer proxy --dns-port; Compose uses {ports.DNS_PORT}); "
                "0: DNS is not redirected.",
            ),
            click.option(
                "--dns-servers",
                default="",
                help="With --dns-port: comma-separated IPv4 resolvers whose port 53 is "
                "redirected [default: the nameservers of /etc/resolv.conf]. Others are not "
                "(Docker's DNS sends its own queries from the namespace).",
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


def _dns_servers(text: str) -> tuple[str, ...]:
    """--dns-servers, or the IPv4 nameservers of /etc/resolv.conf."""
    from gossamer.proxy.listeners.dns import parse_upstreams, system_upstreams

    if text.strip():
        found = [host for host, port in parse_upstreams(text, "--dns-servers") if port == 53]
        if len(found) != len([p for p in text.split(",") if p.strip()]):
            raise UsageError("--dns-servers: give IPv4 addresses without a port (port 53)")
    else:
        found = [host for host, _ in system_upstreams() if ":" not in host]
    if not found:
        raise UsageError(
            "no IPv4 nameserver in /etc/resolv.conf to redirect",
            hint="name the resolvers with --dns-servers, or drop --dns-port",
        )
    return tuple(found)


@iptables.command()
@_spec_options
def install(
    proxy_uid: int,
    inbound_port: int,
    outbound_port: int,
    metrics_port: int,
    admin_port: str | None,
    exclude_inbound_ports: str,
    exclude_outbound_ports: str,
    dns_port: int,
    dns_servers: str,
    no_inbound: bool,
    dry_run: bool,
) -> None:
    """Install the REDIRECT rules (replacing earlier ones)."""
    from gossamer.proxy.listeners import transparent as ipt

    if admin_port is not None:
        click.echo(
            "warning: --admin-port is ignored: the admin port listens on 127.0.0.1 and is "
            "not exempt from interception (--exclude-inbound-ports PORT opens a port)",
            err=True,
        )
    spec = ipt.InterceptSpec(
        proxy_uid=proxy_uid,
        inbound_port=inbound_port,
        outbound_port=outbound_port,
        metrics_port=metrics_port,
        exclude_inbound_ports=_ports(exclude_inbound_ports, "--exclude-inbound-ports"),
        exclude_outbound_ports=_ports(exclude_outbound_ports, "--exclude-outbound-ports"),
        intercept_inbound=not no_inbound,
        dns_port=dns_port,
        dns_servers=_dns_servers(dns_servers) if dns_port else (),
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
    from gossamer.proxy.listeners import transparent as ipt

    changed = ipt.remove()
    click.echo(
        "removed the gossamer iptables rules" if changed else "no gossamer rules were installed"
    )
