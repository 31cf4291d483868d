"""`gossamer control`: run the control plane (xDS server) from a mesh.yaml."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from gossamer.contract import limits
from gossamer.fdlimits import raise_nofile_limit
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
@click.option(
    "--api-max-connections",
    type=click.IntRange(1),
    default=limits.API_MAX_CONNECTIONS,
    show_default=True,
    help="Connections the operator API holds (fewer when the open-file limit minus "
    "--fd-reserve is lower).",
)
@click.option(
    "--fd-reserve",
    type=click.IntRange(0),
    default=limits.API_FD_RESERVE,
    show_default=True,
    help="File descriptors the operator API leaves for xDS, bootstrap, the CA and the store.",
)
@click.option(
    "--api-header-timeout",
    type=click.FloatRange(0, min_open=True),
    default=limits.API_HEADER_TIMEOUT,
    show_default=True,
    help="Seconds an operator API client gets to send a request head.",
)
@click.option(
    "--api-idle-timeout",
    type=click.FloatRange(0, min_open=True),
    default=limits.API_IDLE_TIMEOUT,
    show_default=True,
    help="Seconds an idle operator API connection is kept.",
)
@click.option(
    "--api-body-timeout",
    type=click.FloatRange(0, min_open=True),
    default=limits.API_BODY_TIMEOUT,
    show_default=True,
    help="Seconds an operator API client gets to send a request body (then 408).",
)
def control(
    config_path: Path,
    reload_interval: float,
    log_level: str | None,
    api_max_connections: int,
    fd_reserve: int,
    api_header_timeout: float,
    api_idle_timeout: float,
    api_body_timeout: float,
) -> None:
    """Run the control plane: serve xDS to sidecars and proxyless gRPC clients.

    Stops cleanly on SIGTERM or Ctrl-C; SIGHUP reloads the configuration now.
    """
    setup_logging(log_level)
    raise_nofile_limit()
    from gossamer.control.api_limits import ApiLimits
    from gossamer.control.server import ControlPlane

    limits = ApiLimits(
        max_connections=api_max_connections,
        fd_reserve=fd_reserve,
        header_timeout=api_header_timeout,
        idle_timeout=api_idle_timeout,
        body_timeout=api_body_timeout,
    )
    plane = ControlPlane(config_path, reload_interval=reload_interval, api_limits=limits)
    asyncio.run(plane.run_until_signalled())
