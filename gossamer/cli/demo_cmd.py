"""`gossamer demo`: the demo mesh's services and load generator (used by `gossamer up`
and by the demo compose.yaml)."""

from __future__ import annotations

import asyncio

import click

from gossamer.errors import UsageError


@click.group()
def demo() -> None:
    """Run one of the demo services (web, catalog, inventory) or the load generator."""


@demo.command()
@click.option("--role", type=click.Choice(["web", "catalog", "inventory"]), required=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True)
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on.")
@click.option("--upstream", help="Base URL of the next service, e.g. http://catalog:8080.")
@click.option("--proxy", help="Send upstream calls through this HTTP proxy (the sidecar).")
@click.option("--fail-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True)
@click.option("--latency-ms", type=click.FloatRange(0), default=2.0, show_default=True)
def app(
    role: str,
    port: int,
    host: str,
    upstream: str | None,
    proxy: str | None,
    fail_rate: float,
    latency_ms: float,
) -> None:
    """Serve one demo service."""
    from gossamer.demo.services import UPSTREAM_OF, DemoConfig, run

    if role in UPSTREAM_OF and not upstream:
        raise UsageError(f"--upstream is required for {role} (it calls {UPSTREAM_OF[role]})")
    run(DemoConfig(role, port, upstream, proxy, fail_rate, latency_ms, host))


@demo.command()
@click.option("--url", required=True, help="What to request, e.g. http://web:8080/.")
@click.option("--rate", type=click.FloatRange(0.1), default=5.0, show_default=True)
@click.option("--proxy", help="Send requests through this HTTP proxy (the sidecar).")
@click.option(
    "--duration", type=click.FloatRange(0), default=None, help="Seconds; default forever."
)
def loadgen(url: str, rate: float, proxy: str | None, duration: float | None) -> None:
    """Send a steady stream of requests."""
    from gossamer.demo.loadgen import generate

    stats = asyncio.run(generate(url, rate=rate, proxy=proxy, duration=duration))
    click.echo(f"sent={stats.sent} ok={stats.ok} failed={stats.failed} codes={stats.codes}")
