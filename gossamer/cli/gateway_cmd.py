"""`gossamer gateway`: run a node's gateway (docs/architecture.md, "Several nodes").

Other nodes' sidecars reach this node's instances through it: it reads the SNI of each
mutual-TLS connection and forwards the bytes to a local instance of that service port,
without terminating TLS. The flags `--node`, `--listen`, `--advertise`, `--control` and
`--token-file` are a contract (issue 18); the rest mirror `gossamer proxy`'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from gossamer.cli.proxy_cmd import node_label
from gossamer.contract import ports


def _required_node(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not value:
        raise click.BadParameter("the gateway's node name is required")
    return node_label(ctx, param, value)


@click.command()
@click.option(
    "--node",
    required=True,
    callback=_required_node,
    help="This node's name, as its sidecars' --node (a DNS-1123 label).",
)
@click.option(
    "--listen",
    default="0.0.0.0:15443",
    show_default=True,
    help="Where other nodes' sidecars connect, HOST:PORT.",
)
@click.option(
    "--advertise",
    required=True,
    help="HOST:PORT other nodes reach the gateway at (registered with the control "
    "plane; the address must be the one the control plane sees the gateway "
    "connect from, or one its join token allows).",
)
@click.option(
    "--control",
    required=True,
    help="Control plane xDS address HOST:PORT (mutual TLS), or several replicas' as "
    "HOST:PORT,HOST:PORT,... in preference order (this node's first), or a name resolving "
    "to several addresses. The gateway moves to the next replica when its replica fails, "
    "and back when the first answers again (as gossamer proxy).",
)
@click.option(
    "--bootstrap",
    help=f"Control plane bootstrap address(es) HOST:PORT[,HOST:PORT...], tried in turn "
    f"[default: each --control host, port {ports.BOOTSTRAP_PORT}].",
)
@click.option(
    "--control-probe-interval",
    type=click.FloatRange(0.1),
    default=30.0,
    show_default=True,
    help="Seconds between probes of the preferred control-plane replica while the gateway "
    "uses another one (jittered by 20%).",
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File with the gateway's join token, made for service gateway in "
    "namespace gossamer-system (or the token in $GOSSAMER_TOKEN).",
)
@click.option("--zone", default="", help="Locality zone of this node.")
@click.option("--instance-id", help="Instance id to register [default: NODE-gateway].")
@click.option(
    "--admin-port",
    type=click.IntRange(0, 65535),
    default=15021,
    show_default=True,
    help="Admin port (/ready, /routes, /metrics; 0: any free port).",
)
@click.option(
    "--admin-address",
    default="127.0.0.1",
    show_default=True,
    help="Address of the admin port (0.0.0.0 to let Prometheus scrape /metrics).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=15020,
    show_default=True,
    help="Metrics-only port (GET /metrics; 0: none).",
)
@click.option(
    "--metrics-address",
    default="0.0.0.0",
    show_default=True,
    help="Address of the metrics port (every interface by default, as the sidecar's).",
)
@click.option(
    "--cert-ttl",
    type=click.IntRange(0),
    default=0,
    help="Certificate lifetime to ask for, in seconds [default: the control plane's].",
)
@click.option(
    "--max-connections",
    type=click.IntRange(0),
    default=8192,
    show_default=True,
    help="Connections held at once (0: no cap); a new one displaces the oldest "
    "connection not yet routed, or is closed.",
)
@click.option(
    "--hello-timeout",
    type=click.FloatRange(0, min_open=True),
    default=10.0,
    show_default=True,
    help="Seconds from accept for the whole TLS ClientHello.",
)
@click.option(
    "--connect-timeout",
    type=click.FloatRange(0, min_open=True),
    default=2.0,
    show_default=True,
    help="Seconds to connect to a local instance.",
)
@click.option(
    "--idle-timeout",
    type=click.FloatRange(0),
    default=3600.0,
    show_default=True,
    help="Seconds without a byte either way before a relay is closed (0: never).",
)
def gateway(**opts: Any) -> None:
    """Run a node gateway: other nodes' mTLS connections to this node's instances, by SNI.

    \b
    gossamer gateway --node node-2 --listen 0.0.0.0:15443 --advertise 10.0.0.2:15443 \\
        --control 10.0.0.2:15012,10.0.0.1:15012 --token-file gateway.token
    """
    from gossamer.proxy.gateway.main import GatewaySettings, run

    run(GatewaySettings(**opts))
