"""`gossamer status`: the sidecars connected to the control plane and their xDS state."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import click

from gossamer.cli.output import emit, output_option, print_table

TYPES = ("CDS", "EDS", "LDS", "RDS", "SDS")


def _left(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    if seconds <= 0:
        return "EXPIRED"
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m"


def _type_cell(state: dict[str, Any] | None) -> str:
    if not state:
        return "-"
    acked = (state.get("acked_version") or "")[:8] or "-"
    nack = state.get("last_nack")
    if nack and (nack.get("version") or "") != (state.get("acked_version") or ""):
        return f"{acked} NACK"
    if state.get("sent_version") and state.get("sent_version") != state.get("acked_version"):
        return f"{acked} (sent {(state.get('sent_version') or '')[:8]})"
    return acked


@click.command()
@click.option(
    "--api", help="Operator API URL [default: from mesh.yaml, or http://127.0.0.1:15014]."
)
@click.option("--token", help="API token [default: $GOSSAMER_API_TOKEN or the local admin token].")
@click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="mesh.yaml to find the API.",
)
@output_option
def status(api: str | None, token: str | None, config: Path | None, output: str) -> None:
    """Show connected sidecars: identity, certificate time left, versions ACKed per xDS
    type, and the last NACK with its error; and the node gateways."""
    from gossamer.operator_client import resolve_client

    client = resolve_client(api, token, config)
    sidecars = client.get("/v1/sidecars")["sidecars"]
    gateways = client.get("/v1/gateways")["gateways"]
    info = client.get("/v1/config")

    def render() -> None:
        cfg = info.get("config", {})
        click.echo(
            f"control plane {client.base_url}  trust domain {cfg.get('trust_domain')}  "
            f"config loads {cfg.get('loads')}"
            + (f"  LAST CONFIG ERROR: {cfg['last_error']}" if cfg.get("last_error") else "")
        )
        rows = []
        nacks = []
        for s in sidecars:
            types = s.get("types", {})
            rows.append(
                [
                    s.get("node_id") or "-",
                    s.get("node") or "-",
                    (s.get("identity") or "insecure").removeprefix("spiffe://"),
                    s.get("peer", ""),
                    _left(s.get("cert_seconds_left")),
                    *[_type_cell(types.get(t)) for t in TYPES],
                ]
            )
            for type_name, state in types.items():
                nack = state.get("last_nack")
                if nack:
                    when = dt.datetime.fromtimestamp(nack["at"], dt.UTC).strftime("%H:%M:%SZ")
                    nacks.append([s.get("node_id"), type_name, when, nack.get("error", "")])
        print_table(["sidecar", "node", "identity", "peer", "cert left", *TYPES], rows)
        if not rows:
            click.echo("no sidecars connected")
        if nacks:
            click.echo("")
            print_table(["sidecar", "type", "at", "last NACK error"], nacks, title="NACKs")
        if gateways:
            click.echo("")
            print_table(
                ["node", "zone", "gateway", "health", "instances (healthy)"],
                [
                    [g["node"], g["zone"] or "-", f"{g['address']}:{g['port']}", g["health"],
                     f"{g['instances']} ({g['healthy_instances']})"]
                    for g in gateways
                ],
                title="Node gateways",
            )  # fmt: skip

    data = {"sidecars": sidecars, "gateways": gateways, "config": info.get("config")}
    emit(output, data, render)
