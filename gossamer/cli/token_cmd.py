"""`gossamer token`: join tokens that let a new sidecar get its first certificate."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from gossamer.cli.certs_cmd import ca_dir_option, parse_ttl, resolve_dir
from gossamer.cli.output import emit, output_option, print_table


def _audit(directory: Path, action: str, target: str, **details: object) -> None:
    """Record a change made from the command line in `<ca-dir>/audit.log` (JSON lines,
    the operator API's format), by the local user's name."""
    import getpass

    from gossamer.control.audit import AuditLog

    AuditLog(directory).record(getpass.getuser(), "local", action, target, "ok", **details)


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@click.group()
def token() -> None:
    """Create, list and revoke join tokens (one service each, expiring)."""


@token.command()
@click.option("--service", required=True, help="The service the token may join as.")
@click.option("--namespace", default="default", show_default=True)
@click.option("--ttl", default="1h", show_default=True, help="How long the token stays valid.")
@ca_dir_option
@output_option
def create(service: str, namespace: str, ttl: str, directory: Path | None, output: str) -> None:
    """Create a token; it is printed once and only its hash is stored."""
    from gossamer.certs.ca import CertificateAuthority
    from gossamer.certs.tokens import TokenStore

    path = resolve_dir(directory)
    ca = CertificateAuthority.load(path)
    secret, record = TokenStore(path).create(
        service, ca.root_pin(), namespace=namespace, ttl=parse_ttl(ttl)
    )
    _audit(path, "create join token", f"{service}.{namespace}", token_id=record.token_id)
    data = {"token": secret, **record.public()}
    emit(output, data, lambda: click.echo(secret))


@token.command("list")
@ca_dir_option
@output_option
def list_tokens(directory: Path | None, output: str) -> None:
    """List tokens (ids, scope, expiry, status; never secrets)."""
    from gossamer.certs.tokens import TokenStore

    records = [r.public() for r in TokenStore(resolve_dir(directory)).list()]
    emit(
        output,
        records,
        lambda: print_table(
            ["id", "service", "namespace", "created", "expires", "status"],
            [
                [
                    r["id"],
                    r["service"],
                    r["namespace"],
                    _when(r["created"]),
                    _when(r["expires"]),
                    r["status"],
                ]
                for r in records
            ],
        ),
    )


@token.command()
@click.argument("token_id")
@ca_dir_option
@output_option
def revoke(token_id: str, directory: Path | None, output: str) -> None:
    """Revoke the token with id TOKEN_ID (the second field of the token)."""
    from gossamer.certs.tokens import TokenStore

    path = resolve_dir(directory)
    record = TokenStore(path).revoke(token_id)
    _audit(path, "revoke join token", token_id)
    emit(output, record.public(), lambda: click.echo(f"revoked token {token_id}"))
