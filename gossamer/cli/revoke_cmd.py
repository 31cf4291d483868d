"""`gossamer certs revoke SERIAL|--cert FILE` and `gossamer certs revoked`: leaf
revocation, through the control plane's operator API.

Revocation lives in the control plane (its data directory), which signs the CRLs and
pushes them with the trust bundle, so these commands talk to its API (`--api`,
`--token`, `--config`: gossamer/operator_client.py) rather than to a CA directory.
`revoke` needs an operator token, `revoked` a viewer's. A serial is hex as the control
plane logs it (`certificate issued ... serial=...`) or `gossamer certs inspect` prints it;
`0x` and colons are accepted. `--cert FILE` reads the serial and the expiry from the
certificate itself (PEM or DER; the first certificate of a chain), so the control plane
keeps the entry exactly as long as the leaf lives even if it did not issue it (by serial
alone such an entry is kept 720 h, the longest lifetime a leaf can have). The control
plane also revokes every leaf renewed from the revoked one, and the output lists them.
Revoking a leaf does not stop its join token from admitting the instance again: the output names the token the leaf descends from, and `gossamer
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
@click.argument("serial", required=False)
@click.option(
    "--cert",
    "cert_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Revoke this certificate (PEM or DER; the first of a chain): its serial and expiry "
    "are read from it. Instead of SERIAL.",
)
@click.option(
    "--reason",
    default="",
    help="Why (free text; key_compromise, superseded, affiliation_changed, "
    "cessation_of_operation also go into the CRL as its reason code).",
)
@api_options
@output_option
def revoke(
    serial: str | None,
    cert_file: Path | None,
    reason: str,
    api: str | None,
    token: str | None,
    config: Path | None,
    output: str,
) -> None:
    """Revoke the leaf certificate with serial SERIAL (hex), or the one in --cert FILE, at
    every sidecar, with every leaf renewed from it."""
    from gossamer.certs.crl import parse_serial
    from gossamer.errors import ConfigError, UsageError
    from gossamer.operator_client import resolve_client

    if (serial is None) == (cert_file is None):
        raise UsageError(
            "give the certificate's SERIAL or --cert FILE (one of them)",
            hint="gossamer certs inspect CERT.pem shows a certificate's serial",
        )
    body: dict[str, Any] = {"reason": reason}
    if cert_file is not None:
        number, not_after = _read_certificate(cert_file)
        body.update(serial=format(number, "x"), not_after=not_after)
    else:
        assert serial is not None
        try:
            parse_serial(serial)  # the same check as the API's, before any request
        except ConfigError as exc:
            raise UsageError(exc.message, hint=exc.hint) from None
        body["serial"] = serial
    client = resolve_client(api, token, config)
    entry = client.request("POST", "/v1/revocations", body)
    emit(output, entry, lambda: _say_revoked(entry))


def _read_certificate(path: Path) -> tuple[int, float]:
    """The serial and expiry (seconds since the epoch) of the certificate in `path`."""
    from cryptography import x509

    from gossamer.errors import GossamerError, UsageError

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise GossamerError(f"cannot read certificate {path}: {exc.strerror}") from None
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            cert = x509.load_pem_x509_certificates(data)[0]
        else:
            cert = x509.load_der_x509_certificate(data)
        return cert.serial_number, cert.not_valid_after_utc.timestamp()
    except (ValueError, TypeError, IndexError) as exc:
        raise UsageError(
            f"{path} is not an X.509 certificate (PEM or DER): {exc}",
            hint="give the leaf certificate file, or its serial",
        ) from None


def _say_revoked(entry: dict[str, Any]) -> None:
    extra = entry.get("descendants_revoked") or []
    if entry.get("already_revoked"):
        click.echo(
            f"certificate {entry['serial']} was already revoked ({_when(entry['revoked_at'])})"
        )
    else:
        who = f" ({entry['spiffe_id']})" if entry.get("spiffe_id") else ""
        click.echo(
            f"revoked certificate {entry['serial']}{who}: every sidecar refuses it within seconds"
        )
        if entry.get("expired"):
            click.echo(f"note: it had already expired ({_when(entry['not_after'])})")
        elif not entry.get("issued_here"):
            click.echo(
                "note: this control plane has no record of issuing it; revoked anyway, "
                f"until {_when(entry['not_after'])}"
            )
    if extra:
        click.echo(f"also revoked {len(extra)} certificate(s) renewed from it: {', '.join(extra)}")
    if entry.get("token_id") and not entry.get("already_revoked"):
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
