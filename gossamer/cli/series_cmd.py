"""`gossamer series`: one golden metric of a service or an edge over time.

Points come from the control plane's `/v1/series` (its embedded history, or
Prometheus when the control plane has one), or straight from Prometheus with
`--prometheus URL` (or `observability.prometheus_url`), through the same query
checks (gossamer/observe/series.py). Prints a block chart with axis labels and a
min/avg/max/last line (gossamer/observe/chart.py), or the API's JSON with `-o json`.
"""

from __future__ import annotations

import shutil
import time
from typing import Any

import click

from gossamer.cli.observe_cmd import Resolved, _run, resolve, source_options
from gossamer.cli.output import emit, output_option
from gossamer.errors import ConfigError, UsageError
from gossamer.observe.history import METRICS
from gossamer.observe.series import DIRECTIONS


def _without_window(func: Any) -> Any:
    """`source_options` without `--window` (a series has --range and --step)."""
    func = source_options(func)
    func.__click_params__ = [p for p in func.__click_params__ if p.name != "window"]
    return func


async def _fetch(r: Resolved, params: dict[str, str]) -> dict[str, Any]:
    if r.prometheus:
        from gossamer.observe.prometheus import PrometheusClient
        from gossamer.observe.series import parse_series_query, series_body
        from gossamer.observe.series_sources import PrometheusSeries

        source = PrometheusSeries(PrometheusClient(r.prometheus))
        try:
            q = parse_series_query(params, source.limits())
        except ConfigError as exc:
            raise UsageError(f"--{exc.field}: {exc.detail}") from None
        now = time.time()
        return series_body(q, await source.series(q, now), source=source.name, now=now)
    from gossamer.observe.observe_client import ControlApi

    return await ControlApi(r.api, r.token).get("/v1/series", params)


def _print_chart(data: dict[str, Any]) -> None:
    from gossamer.observe.chart import render_chart

    columns = shutil.get_terminal_size((80, 24)).columns
    width = max(20, min(120, columns - 16))
    click.echo("\n".join(render_chart(data, width=width)))


@click.command()
@click.argument("service")
@click.option("--metric", "-m", type=click.Choice(METRICS), default="rps", show_default=True)
@click.option(
    "--range", "range_", help="How far back, e.g. 5m, 1h (default: 1h or what the history holds)."
)
@click.option("--step", help="Time between points, e.g. 10s, 30s (default: about 120 points).")
@click.option("--peer", help="The other service of an edge.")
@click.option(
    "--direction",
    type=click.Choice(DIRECTIONS),
    help="inbound: peer -> SERVICE (default with --peer); outbound: SERVICE -> peer.",
)
@_without_window
@output_option
def series(
    service: str,
    metric: str,
    range_: str | None,
    step: str | None,
    peer: str | None,
    direction: str | None,
    output: str,
    **opts: Any,
) -> None:
    """One metric of SERVICE (or of the edge with --peer) over time, as a chart."""
    if direction is not None and peer is None:
        raise UsageError("--direction needs --peer (the other service of the edge)")
    r = resolve(window=None, **opts)
    params = {"service": service, "metric": metric}
    for name, value in (
        ("range", range_),
        ("step", step),
        ("peer", peer),
        ("direction", direction),
    ):
        if value is not None:
            params[name] = value
    data = _run(_fetch(r, params))
    emit(output, data, lambda: _print_chart(data))
