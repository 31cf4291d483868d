"""`gossamer registry`: inspect the service registry and check its sources.

    gossamer registry validate mesh.yaml     # = gossamer validate: every error of the file
    gossamer registry list --config mesh.yaml [--store URL] [--output json]
    gossamer registry compose compose.yaml [--output json]

`list` shows what mesh.yaml declares, what a store holds (`--store embedded` reads the
file in the data directory without locking it; `--store etcd://...` reads etcd), or
both side by side with a SOURCE column. Errors print one line naming the file, field
and line.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from gossamer.cli.output import emit, output_option, print_table
from gossamer.cli.validate_cmd import validate
from gossamer.discovery.model import Endpoint, RegistryState, Service
from gossamer.errors import UsageError

DEFAULT_DATA_DIR = ".gossamer"
CLI_RETRY_TIMEOUT = 3.0


def _data_dir_default() -> str:
    return os.environ.get("GOSSAMER_DATA_DIR", DEFAULT_DATA_DIR)


@click.group()
def registry() -> None:
    """Inspect the service registry and check its sources."""


# the older name of `gossamer validate`: the whole file, every error
registry.add_command(validate, name="validate")


@dataclass
class _Row:
    sources: set[str]
    service: Service | None = None
    endpoint: Endpoint | None = None


async def _read_store(url: str, data_dir: Path) -> RegistryState:
    from gossamer.discovery.stores import EMBEDDED, open_store, parse_store_url

    spec = parse_store_url(url)
    options: dict[str, Any] = (
        {"read_only": True} if spec.kind == EMBEDDED else {"retry_timeout": CLI_RETRY_TIMEOUT}
    )
    store = open_store(url, data_dir=data_dir, **options)
    await store.start()
    try:
        return await store.state()
    finally:
        await store.close()


@registry.command(name="list")
@click.option("--config", "-c", type=click.Path(dir_okay=False, path_type=Path), help="mesh.yaml")
@click.option("--store", envvar="GOSSAMER_STORE", help="embedded or etcd://HOST:PORT,...[/prefix]")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=_data_dir_default,
    show_default=f"$GOSSAMER_DATA_DIR or {DEFAULT_DATA_DIR}",
    help="Where the embedded store keeps registry.json.",
)
@output_option
def list_(config: Path | None, store: str | None, data_dir: Path, output: str) -> None:
    """List services and endpoints from mesh.yaml and/or a registry store."""
    if config is None and store is None:
        raise UsageError("nothing to list", hint="give --config mesh.yaml and/or --store URL")
    services: dict[Any, _Row] = {}
    endpoints: dict[Any, _Row] = {}
    revision = None
    if config is not None:
        from gossamer.discovery.mesh_services import load_services

        mesh = load_services(config)
        for s in mesh.services:
            services[s.key] = _Row({"file"}, service=s)
        for e in mesh.endpoints:
            endpoints[(e.service, e.instance_id)] = _Row({"file"}, endpoint=e)
    if store is not None:
        state = asyncio.run(_read_store(store, data_dir))
        revision = state.revision
        for key, s in state.services.items():
            services.setdefault(key, _Row(set())).sources.add("store")
            services[key].service = s
        for ek, e in state.endpoints.items():
            endpoints.setdefault(ek, _Row(set())).sources.add("store")
            endpoints[ek].endpoint = e
    svc_rows = [services[k] for k in sorted(services)]
    ep_rows = [endpoints[k] for k in sorted(endpoints)]
    data = {
        "revision": revision,
        "services": [
            {**r.service.to_dict(), "sources": sorted(r.sources)} for r in svc_rows if r.service
        ],
        "endpoints": [
            {**r.endpoint.to_dict(), "sources": sorted(r.sources)} for r in ep_rows if r.endpoint
        ],
    }

    def render() -> None:
        def source(r: _Row) -> str:
            return "+".join(sorted(r.sources))

        print_table(
            ["SERVICE", "PORTS", "ENDPOINTS", "SOURCE"],
            [
                (
                    str(r.service.key),
                    ", ".join(f"{p.port}/{p.protocol}" for p in r.service.ports) or "-",
                    sum(1 for k in endpoints if k[0] == r.service.key),
                    source(r),
                )
                for r in svc_rows
                if r.service
            ],
            title="services" + (f" (store revision {revision})" if revision is not None else ""),
        )
        click.echo()
        print_table(
            ["SERVICE", "INSTANCE", "ADDRESS", "ZONE", "WEIGHT", "HEALTH", "OWNER", "SOURCE"],
            [
                (
                    str(e.service),
                    e.instance_id,
                    f"[{e.address}]:{e.port}" if ":" in e.address else f"{e.address}:{e.port}",
                    e.zone or "-",
                    e.weight,
                    e.health.value,
                    e.owner,
                    source(r),
                )
                for r in ep_rows
                if (e := r.endpoint) is not None
            ],
            title="endpoints",
        )

    emit(output, data, render)


@registry.command()
@click.argument("compose_file", type=click.Path(dir_okay=False, path_type=Path))
@output_option
def compose(compose_file: Path, output: str) -> None:
    """Show the services of a compose file and the ports they expose."""
    from gossamer.discovery.compose_source import load_compose, mesh_service_name

    parsed = load_compose(compose_file, environ=os.environ)
    data = [
        {
            "service": s.name,
            "mesh_name": mesh_service_name(s.name),
            "ports": [
                {"port": p.port, "protocol": p.protocol, "published": p.published} for p in s.ports
            ],
            "not_meshed": list(s.other_ports),
            "meshed": s.meshed,
            "app_port": s.app_port,
        }
        for s in parsed.services
    ]

    def render() -> None:
        print_table(
            ["SERVICE", "PORTS", "NOT MESHED"],
            [
                (
                    s.name,
                    ", ".join(f"{p.port}/{p.protocol}" for p in s.ports) or "-",
                    ", ".join(s.other_ports) or "-",
                )
                for s in parsed.services
            ],
        )

    emit(output, data, render)
