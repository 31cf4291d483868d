"""`gossamer certs revoke SERIAL` and `gossamer certs revoked`: leaf revocation, through
the control plane's operator API.

Revocation lives in the control plane (its data directory), which signs the CRLs and
pushes them with the trust bundle, so these commands talk to its API (`--api`,
`--token`, `--config`: gossamer/operator_client.py) rather than to a CA directory.
`revoke` needs an operator token, `revoked` a viewer's. A serial is hex as the control
plane logs it (`certificate issued ... serial=...`) or `gossamer certs inspect` prints it;
`0x` and colons are accepted. Revoking a leaf does not stop its join token from admitting
the instance again: the output names the token the leaf descends from, and `gossamer
token revoke ID --config mesh.yaml` revokes the token and every leaf it produced.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from gossamer.cli.output import emit, output_option, print_table

F = TypeVar("F", bound=Callable[..., Any])


def api_options(func: F) -> F:
    """`--api`, `--token` and `--config`: where the operator API is and how to call it."""
    func = click.option(
        "--config",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="mesh.yaml to find the API (and, on its machine, the admin token).",
    )(func)
    func = click.option(
        "--token", help="API token [default: $GOSSAMER_API_TOKEN or the local admin token]."
    )(func)
    return click.option(
        "--api", help="Operator API URL [default: from mesh.yaml, or http://127.0.0.1:15014]."
    )(func)


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@click.command()
@click.argument("serial")
@click.option(
    "--reason",
    default="",
    help="Why (free text; key_compromise, superseded, affiliation_changed, "
    "cessation_of_operation also go into the CRL as its reason code).",
)
@api_options
@output_option
def revoke(
    serial: str, reason: str, api: str | None, token: str | None, config: Path | None, output: str
) -> None:
    """Revoke the leaf certificate with serial SERIAL (hex) at every sidecar."""
    from gossamer.certs.crl import parse_serial
    from gossamer.errors import ConfigError, UsageError
    from gossamer.operator_client import resolve_client

    try:
        parse_serial(serial)  # the same check as the API's, before any request
    except ConfigError as exc:
        raise UsageError(exc.message, hint=exc.hint) from None
    client = resolve_client(api, token, config)
    entry = client.request("POST", "/v1/revocations", {"serial": serial, "reason": reason})
    emit(output, entry, lambda: _say_revoked(entry))


def _say_revoked(entry: dict[str, Any]) -> None:
    if entry.get("already_revoked"):
        click.echo(
            f"certificate {entry['serial']} was already revoked ({_when(entry['revoked_at'])})"
        )
        return
    who = f" ({entry['spiffe_id']})" if entry.get("spiffe_id") else ""
    click.echo(
        f"revoked certificate {entry['serial']}{who}: every sidecar refuses it within seconds"
    )
    if not entry.get("issued_here"):
        click.echo("note: this control plane has no record of issuing it; revoked anyway")
    if entry.get("token_id"):
        click.echo(
            f"it descends from join token {entry['token_id']}, which can still admit its "
            f"instance again: gossamer token revoke {entry['token_id']} --config mesh.yaml"
        )


@click.command()
@api_options
@output_option
def revoked(api: str | None, token: str | None, config: Path | None, output: str) -> None:
    """List the revoked leaf certificates that have not expired yet."""
    from gossamer.operator_client import resolve_client

    entries = resolve_client(api, token, config).get("/v1/revocations")["revoked"]
    emit(
        output,
        entries,
        lambda: print_table(
            ["serial", "spiffe id", "revoked", "by", "reason", "token", "expires"],
            [
                [
                    e["serial"],
                    e["spiffe_id"] or "-",
                    _when(e["revoked_at"]),
                    e["by"],
                    e["reason"] or "-",
                    e["token_id"] or "-",
                    _when(e["not_after"]),
                ]
                for e in entries
            ],
        ),
    )
