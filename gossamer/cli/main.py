"""Entry point of the `gossamer` command: the top-level group and error reporting.

Subcommands live in their own modules and are imported only when used, so
`gossamer --help` and short commands start fast. A `GossamerError` (a user mistake,
bad input, an unreachable server) prints as one line plus a hint and exits non-zero;
only genuine bugs show a traceback.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from gossamer import __version__
from gossamer.errors import ConfigErrors, GossamerError

# command name -> (module, attribute, one-line help shown in `gossamer --help`)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "certs": ("gossamer.cli.certs_cmd", "certs", "Manage the mesh CA and certificates."),
    "token": ("gossamer.cli.token_cmd", "token", "Create, list and revoke join tokens."),
    "control": ("gossamer.cli.control_cmd", "control", "Run the control plane."),
    "status": ("gossamer.cli.status_cmd", "status", "Show connected sidecars and xDS state."),
    "proxy": ("gossamer.cli.proxy_cmd", "proxy", "Run a sidecar proxy, or set up iptables."),
    "gateway": ("gossamer.cli.gateway_cmd", "gateway", "Run a node gateway (several nodes)."),
    "registry": ("gossamer.cli.registry_cmd", "registry", "Inspect the service registry."),
    "validate": ("gossamer.cli.validate_cmd", "validate", "Check a mesh.yaml: every error."),
    "inject": ("gossamer.cli.compose_cmd", "inject", "Add sidecars to a compose file."),
    "uninject": ("gossamer.cli.compose_cmd", "uninject", "Restore an injected compose file."),
    "doctor": ("gossamer.cli.doctor_cmd", "doctor", "Check the Docker Engine and Compose here."),
    "up": ("gossamer.cli.up_cmd", "up", "Run the demo mesh locally, without Docker."),
    "stat": ("gossamer.cli.observe_cmd", "stat", "Golden metrics per service."),
    "edges": ("gossamer.cli.observe_cmd", "edges", "Caller -> callee edges with identities."),
    "top": ("gossamer.cli.observe_cmd", "top", "Live busiest routes."),
    "series": ("gossamer.cli.series_cmd", "series", "One golden metric over time, charted."),
    "tap": ("gossamer.cli.tap_cmd", "tap", "Live requests of a service (operator)."),
    "demo": ("gossamer.cli.demo_cmd", "demo", "Run a demo service or the load generator."),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use.

    Every entry of COMMANDS is listed: a registered command whose module is missing is
    a packaging bug, so it fails loudly when used (and the CLI unit test fails) instead
    of silently vanishing from `gossamer --help`."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module = importlib.import_module(entry[0])
        command = getattr(module, entry[1])
        if not isinstance(command, click.Command):
            raise TypeError(f"{entry[0]}.{entry[1]} is not a click command")
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(n, COMMANDS[n][2]) for n in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="gossamer")
def cli() -> None:
    """Gossamer: a service mesh for Docker Compose.

    Sidecars carry service-to-service traffic over mutual TLS with SPIFFE identities;
    the control plane streams Envoy xDS v3 configuration to them.
    """


def report_error(exc: GossamerError) -> None:
    """Print an error as one line plus a hint, in red when on a terminal (several
    configuration errors: each so)."""
    for one in exc.errors if isinstance(exc, ConfigErrors) else (exc,):
        click.secho(f"error: {one.message}", fg="red", err=True)
        if one.hint:
            click.echo(f"hint: {one.hint}", err=True)


def main(argv: list[str] | None = None) -> Any:
    """Run the CLI; returns only when called with standalone exit disabled (tests)."""
    try:
        cli.main(args=argv, prog_name="gossamer", standalone_mode=False)
    except GossamerError as exc:
        report_error(exc)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(0)


if __name__ == "__main__":
    main()
