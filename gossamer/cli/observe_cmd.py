"""`gossamer stat`, `gossamer edges`, `gossamer top`: golden metrics from the command line.

With `--prometheus URL` (or `observability.prometheus_url` in mesh.yaml) the figures
come from PromQL; otherwise from the control plane (`--api`, `control.api_listen`),
which scrapes the sidecars' /metrics live. `--output json` prints the rows as the API
serves them. `top` redraws every `--interval` on a terminal; piped, or with
`--output json` or `--once`, it prints once.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from gossamer.cli.output import emit, output_option, print_table
from gossamer.errors import GossamerError, UsageError

F = TypeVar("F", bound=Callable[..., Any])
CONFIG_CANDIDATES = (Path("mesh.yaml"), Path(".gossamer/mesh.yaml"))


def source_options(func: F) -> F:
    options = [
        click.option("--prometheus", envvar="GOSSAMER_PROMETHEUS", help="Prometheus URL; ask it with PromQL."),
        click.option("--api", envvar="GOSSAMER_API", help="Control plane API URL (default from mesh.yaml, else http://127.0.0.1:15014)."),
        click.option("--token", envvar="GOSSAMER_API_TOKEN", help="API token (also $GOSSAMER_API_TOKEN)."),
        click.option("--token-file", type=click.Path(path_type=Path, dir_okay=False), help="File with the API token."),
        click.option("--config", "config_path", envvar="GOSSAMER_CONFIG", type=click.Path(path_type=Path, dir_okay=False), help="mesh.yaml to read observability and control settings from."),
        click.option("--window", "-w", help="Rate window, e.g. 30s, 1m (default 1m)."),
    ]  # fmt: skip
    for option in reversed(options):
        func = option(func)
    return func


@dataclass(frozen=True)
class Resolved:
    prometheus: str | None
    api: str
    token: str | None
    window: float


def resolve(
    prometheus: str | None,
    api: str | None,
    token: str | None,
    token_file: Path | None,
    config_path: Path | None,
    window: str | None,
) -> Resolved:
    from gossamer.observe.settings import (
        DEFAULT_API,
        CliTargets,
        ObservabilitySettings,
        load_observability,
    )
    from gossamer.yamlconf import parse_duration

    targets = CliTargets(observability=ObservabilitySettings())
    path = config_path
    if path is None:
        path = next((p for p in CONFIG_CANDIDATES if p.is_file()), None)
    if path is not None:
        targets = load_observability(path)
    if token is None:
        file = token_file or targets.admin_token_file
        if file is not None and (token_file is not None or file.is_file()):
            try:
                token = file.read_text().strip()
            except OSError as exc:
                raise UsageError(f"cannot read the token file {file}: {exc.strerror}") from None
    seconds = targets.observability.window
    if window is not None:
        try:
            seconds = parse_duration(window)
        except ValueError as exc:
            raise UsageError(f"--window: {exc}") from None
        if seconds < 2:
            raise UsageError("--window must be at least 2s")
    return Resolved(
        prometheus=prometheus or targets.observability.prometheus_url,
        api=api or targets.api_url or DEFAULT_API,
        token=token,
        window=seconds,
    )


async def _fetch(
    kind: str, r: Resolved, service: str | None = None, limit: int = 20
) -> dict[str, Any]:
    """The rows of `kind` (stat, edges, top) as the API's JSON body."""
    if r.prometheus:
        from gossamer.observe.prometheus import PrometheusClient
        from gossamer.observe.sources import PrometheusSource

        source = PrometheusSource(PrometheusClient(r.prometheus))
        base = {"source": "prometheus", "window_seconds": r.window}
        if kind == "stat":
            rows = await source.stats(r.window, service)
            return {**base, "services": [x.to_dict() for x in rows]}
        if kind == "edges":
            return {**base, "edges": [x.to_dict() for x in await source.edges(r.window)]}
        return {**base, "routes": [x.to_dict() for x in await source.routes(r.window, limit)]}
    from gossamer.observe.observe_client import ControlApi

    params = {"window": f"{r.window:g}s"}
    if service:
        params["service"] = service
    if kind == "top":
        params["limit"] = str(limit)
    return await ControlApi(r.api, r.token).get(f"/v1/{kind}", params)


def _run(coro: Any) -> Any:
    try:
        return asyncio.run(coro)
    except GossamerError:
        raise
    except KeyboardInterrupt:
        raise click.exceptions.Abort() from None


@click.command()
@click.argument("service", required=False)
@source_options
@output_option
def stat(service: str | None, output: str, **opts: Any) -> None:
    """Golden metrics per service: meshed sidecars, success rate, requests per second,
    latency p50/p95/p99, open TCP connections (inbound, as each service sees it)."""
    from gossamer.observe.render import STAT_COLUMNS, stat_table

    r = resolve(**opts)
    data = _run(_fetch("stat", r, service))
    if service and not data["services"]:
        raise GossamerError(
            f"no figures for service {service!r}",
            hint="check the name (gossamer stat lists every service)",
        )
    emit(output, data, lambda: print_table(STAT_COLUMNS, stat_table(data["services"])))


@click.command()
@source_options
@click.option("--full-ids", is_flag=True, help="Print whole SPIFFE IDs.")
@output_option
def edges(output: str, full_ids: bool, **opts: Any) -> None:
    """Caller -> callee edges with the mTLS identities seen on them."""
    from gossamer.observe.render import EDGE_COLUMNS, edge_table

    r = resolve(**opts)
    data = _run(_fetch("edges", r))
    emit(
        output,
        data,
        lambda: print_table(EDGE_COLUMNS, edge_table(data["edges"], full_ids=full_ids)),
    )


@click.command()
@source_options
@click.option("--limit", "-n", default=20, show_default=True, type=click.IntRange(1, 1000))
@click.option("--interval", default=2.0, show_default=True, type=click.FloatRange(0.5, 3600))
@click.option("--once", is_flag=True, help="Print once, even on a terminal.")
@output_option
def top(output: str, limit: int, interval: float, once: bool, **opts: Any) -> None:
    """The busiest routes (caller, callee, route, method), redrawn live on a terminal."""
    from gossamer.observe.render import TOP_COLUMNS, top_table

    r = resolve(**opts)
    if output == "json" or once or not sys.stdout.isatty():
        data = _run(_fetch("top", r, limit=limit))
        emit(output, data, lambda: print_table(TOP_COLUMNS, top_table(data["routes"])))
        return
    _run(_live_top(r, limit, interval))


async def _live_top(r: Resolved, limit: int, interval: float) -> None:
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    from gossamer.observe.render import TOP_COLUMNS, top_table

    def table(data: dict[str, Any], note: str) -> Table:
        t = Table(title=note, box=None, header_style="bold", title_justify="left")
        for col in TOP_COLUMNS:
            t.add_column(col)
        for row in top_table(data["routes"]):
            t.add_row(*row)
        return t

    console = Console()
    with Live(console=console, auto_refresh=False, screen=False) as live:
        while True:
            data = await _fetch("top", r, limit=limit)
            where = "Prometheus" if data["source"] == "prometheus" else "the sidecars"
            note = f"busiest routes from {where}, window {r.window:g}s (Ctrl-C to quit)"
            live.update(table(data, note), refresh=True)
            await asyncio.sleep(interval)
