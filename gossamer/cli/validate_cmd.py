"""`gossamer validate`: check a whole mesh.yaml and report every error, one per line.

    gossamer validate mesh.yaml              # FILE:LINE: field.path: message, exit 1
    gossamer validate mesh.yaml -o json      # the errors as a JSON list ([] when valid)
    gossamer validate --reference            # the mesh.yaml reference (Markdown)

It runs exactly what `gossamer control` runs on its file (`control.config.load_mesh`:
trust domain, control, services with their policies and static endpoints,
observability), collecting every independent error instead of stopping at the first.
`gossamer registry validate` is the same command under its older name.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from gossamer.cli.output import output_option, print_json
from gossamer.errors import ConfigError, ConfigErrors, UsageError


@dataclass(frozen=True)
class Checked:
    """The outcome of checking one file."""

    errors: tuple[ConfigError, ...] = ()
    services: int = 0
    endpoints: int = 0


def check_file(path: Path) -> Checked:
    """Parse `path` as the control plane does; every error it has, or what it declares."""
    from gossamer.control.config import load_mesh
    from gossamer.discovery.mesh_services import parse_services

    try:
        root, _mesh = load_mesh(path)
    except ConfigErrors as exc:
        return Checked(exc.errors)
    except ConfigError as exc:
        return Checked((exc,))
    declared = parse_services(root)
    return Checked((), len(declared.services), len(declared.endpoints))


def error_dict(error: ConfigError) -> dict[str, Any]:
    return {
        "file": error.source,
        "line": error.line,
        "field": error.field,
        "message": error.detail,
        "hint": error.hint,
        "text": error.message,
    }


@click.command("validate")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.option(
    "--reference",
    is_flag=True,
    help="Print the mesh.yaml reference (Markdown, generated from the schema) and exit.",
)
@output_option
def validate(config: Path | None, reference: bool, output: str) -> None:
    """Check a mesh.yaml as the control plane would; print every error (FILE:LINE: field: message)."""
    if reference:
        from gossamer.meshconfig.reference import reference_markdown

        click.echo(reference_markdown(), nl=False)
        return
    if config is None:
        raise UsageError("give the mesh.yaml to check", hint="gossamer validate mesh.yaml")
    checked = check_file(config)
    if output == "json":
        print_json([error_dict(e) for e in checked.errors])
    elif checked.errors:
        for error in checked.errors:
            click.echo(error.message)
        count = len(checked.errors)
        click.echo(f"{config}: {count} error{'s' if count != 1 else ''}", err=True)
    else:
        click.echo(
            f"{config}: OK ({checked.services} services, {checked.endpoints} static endpoints)"
        )
    if checked.errors:
        sys.exit(1)
