"""`gossamer up`: run the demo mesh locally as processes, without Docker (gossamer.up)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from gossamer.up.statedir import DEFAULT_STATE_DIR


@click.command("up")
@click.option(
    "--isolate",
    is_flag=True,
    help="Root only: one network namespace per instance, transparent interception.",
)
@click.option(
    "--nodes",
    type=int,
    default=None,
    metavar="N",
    help="Root only: N simulated nodes (1-4), each a network namespace with a gateway, "
    "a control-plane replica and the instances placed there, on a shared etcd.",
)
@click.option(
    "--port-base",
    type=int,
    default=None,
    help="Use consecutive ports from this one (default: free ports the kernel picks).",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_STATE_DIR,
    show_default=True,
    help="CA, join tokens, mesh.yaml and logs of this run (wiped at every start).",
)
@click.option(
    "--rate", type=click.FloatRange(0.1, 1000), default=5.0, show_default=True,
    help="Requests per second the load generator sends.",
)  # fmt: skip
@click.option(
    "--fail-rate", type=click.FloatRange(0, 1), default=0.05, show_default=True,
    help="Share of inventory's answers that are 503 (the mesh retries them).",
)  # fmt: skip
@click.option(
    "--timeout", type=click.FloatRange(1), default=60.0, show_default=True,
    help="Seconds the mesh gets to come up.",
)  # fmt: skip
@click.option(
    "--interval", type=click.FloatRange(0.5), default=5.0, show_default=True,
    help="Seconds between two live summaries.",
)  # fmt: skip
def up(
    isolate: bool,
    nodes: int | None,
    port_base: int | None,
    state_dir: Path,
    rate: float,
    fail_rate: float,
    timeout: float,
    interval: float,
) -> None:
    """Run the demo mesh on this machine: control plane, web -> catalog (x2) ->
    inventory with their sidecars, and a load generator. Ctrl-C stops everything."""
    from gossamer.up.commands import Settings
    from gossamer.up.session import UpOptions, run

    options = UpOptions(
        state_dir=state_dir,
        port_base=port_base,
        isolate=isolate,
        nodes=nodes,
        settings=Settings(rate=rate, fail_rate=fail_rate),
        timeout=timeout,
        interval=interval,
    )
    sys.exit(run(options))
