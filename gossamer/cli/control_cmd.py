"""`gossamer control`: run the control plane (xDS server) from a mesh.yaml."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from gossamer.logs import setup_logging


@click.command("control")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("mesh.yaml"),
    show_default=True,
    envvar="GOSSAMER_CONFIG",
    help="The mesh configuration file (reloaded on change and on SIGHUP).",
)
@click.option(
    "--reload-interval",
    type=click.FloatRange(min=0.05),
    default=0.5,
    show_default=True,
    help="Seconds between checks of the configuration file for changes.",
)
@click.option("--log-level", default=None, help="debug, info, warning or error.")
def control(config_path: Path, reload_interval: float, log_level: str | None) -> None:
    """Run the control plane: serve xDS to sidecars and proxyless gRPC clients.

    Stops cleanly on SIGTERM or Ctrl-C; SIGHUP reloads the configuration now.
    """
    setup_logging(log_level)
    from gossamer.control.server import ControlPlane

    plane = ControlPlane(config_path, reload_interval=reload_interval)
    asyncio.run(plane.run_until_signalled())
