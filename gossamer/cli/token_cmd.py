"""`gossamer token`: join tokens that let a new sidecar get its first certificate.

`token create` makes a token that admits one sidecar instance (`--reusable N`: N) and
lives at most `control.max_token_ttl` (24 h; read from `--config mesh.yaml` when given).
`--output-file F` writes it to F with mode 0600 (never over an existing file without
`--force`) instead of printing it; `--count N` makes N tokens, and `--output-dir DIR`
writes them as files named for `gossamer inject --join --token-dir DIR` (another host's
sidecars). `--allow-address ADDR` (repeatable) lets the sidecars
it admits register ADDR (`gossamer proxy --advertise-address`) besides the address the
control plane sees them connect from: their leaves carry it as an IP or DNS SAN.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import click

from gossamer.cli.certs_cmd import ca_dir_option, parse_ttl, resolve_dir
from gossamer.cli.output import emit, output_option, print_table
from gossamer.cli.revoke_cmd import api_options


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


def _max_ttl(config: Path | None) -> float:
    """The longest token allowed: `control.max_token_ttl` of `config`, else its default."""
    if config is None:
        from gossamer.meshconfig.schema import CONTROL
        from gossamer.yamlconf import parse_duration

        return parse_duration(CONTROL["max_token_ttl"].default)
    from gossamer.control.config import load_mesh

    return load_mesh(config)[1].control.max_token_ttl


def write_secret_file(path: Path, text: str, *, force: bool) -> None:
    """Write `text` to `path` with mode 0600: a new file, or (with `force`) a replacement.
    Never through a symbolic link, never readable by others even for a moment."""
    from gossamer.errors import UsageError
    from gossamer.fsutil import atomic_write

    if force:
        atomic_write(path, text, mode=0o600)  # replaces a link itself, never its target
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        raise UsageError(
            f"{path} exists; not overwriting it", hint="pass --force to replace it"
        ) from None
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(text)
        out.flush()
        os.fsync(out.fileno())


@token.command()
@click.option("--service", required=True, help="The service the token may join as.")
@click.option("--namespace", default="default", show_default=True)
@click.option(
    "--ttl",
    default="1h",
    show_default=True,
    help="How long the token stays valid (at most control.max_token_ttl, 24h).",
)
@click.option(
    "--reusable",
    "uses",
    type=int,
    default=1,
    show_default=True,
    metavar="N",
    help="How many sidecar instances it admits (an instance restarting counts once).",
)
@click.option(
    "--output-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the token to this file (mode 0600) instead of printing it.",
)
@click.option(
    "--count",
    type=click.IntRange(1, 1000),
    default=1,
    show_default=True,
    metavar="N",
    help="Make N tokens (each admitting --reusable instances), e.g. for another host.",
)
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write each token to a file here (mode 0600), named as `inject --join --token-dir` "
    "reads them: S.token (S.NAMESPACE.token outside namespace default; S-1.token ... "
    "S-N.token with --count N).",
)
@click.option("--force", is_flag=True, help="Replace an existing --output-file or file.")
@click.option(
    "--allow-address",
    "addresses",
    multiple=True,
    metavar="ADDR",
    help="An IP address or host name its sidecars may register with --advertise-address "
    "(repeatable; put in their certificates). Without it a sidecar registers the address "
    "it connects to the control plane from.",
)
@click.option(
    "--config",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="mesh.yaml whose control.max_token_ttl caps --ttl [default cap: 24h]; with "
    "--api or --token, where to find the operator API.",
)
@click.option(
    "--api",
    default=None,
    help="Create it through this control plane's operator API (with an etcd store, every "
    "replica then knows it) instead of in the CA directory.",
)
@click.option("--token", "api_token", default=None, help="API token for --api (operator).")
@ca_dir_option
@output_option
def create(
    service: str,
    namespace: str,
    ttl: str,
    uses: int,
    output_file: Path | None,
    count: int,
    output_dir: Path | None,
    force: bool,
    addresses: tuple[str, ...],
    config: Path | None,
    api: str | None,
    api_token: str | None,
    directory: Path | None,
    output: str,
) -> None:
    """Create a token; it is shown once (or written to --output-file) and only its hash
    is stored: in the CA directory, or through the control plane with --api/--token
    (control-plane replicas on one etcd share it)."""
    from gossamer.certs.ca import CertificateAuthority
    from gossamer.certs.sans import check_addresses
    from gossamer.certs.token_rules import check_uses
    from gossamer.certs.tokens import TokenStore
    from gossamer.errors import ConfigError, UsageError

    path = resolve_dir(directory)
    try:
        check_uses(uses)
    except ConfigError:
        raise UsageError("--reusable must be between 1 and 10000") from None
    try:
        check_addresses(addresses)
    except ConfigError as exc:
        raise UsageError(f"--allow-address: {exc.detail}", hint=exc.hint) from None
    if output_file is not None and not force and os.path.lexists(output_file):
        raise UsageError(f"{output_file} exists; not overwriting it", hint="pass --force")
    if output_file is not None and (output_dir is not None or count > 1):
        raise UsageError("--output-file is for one token; use --output-dir with --count")
    files = _token_files(service, namespace, count, output_dir, force)
    made_tokens: list[tuple[str, dict[str, object]]] = []
    for _ in range(count):
        if api or api_token or os.environ.get("GOSSAMER_API"):
            from gossamer.operator_client import resolve_client

            parse_ttl(ttl)  # the same check as the API's, before any request
            body = {"service": service, "namespace": namespace, "ttl": ttl, "reusable": uses,
                    "addresses": list(addresses)}  # fmt: skip
            made = resolve_client(api, api_token, config).request("POST", "/v1/tokens", body)
            secret, public = str(made.pop("token")), made
        else:
            ca = CertificateAuthority.load(path)
            store = TokenStore(path, max_ttl=_max_ttl(config))
            secret, record = store.create(
                service, ca.root_pin(), namespace=namespace, ttl=parse_ttl(ttl), uses=uses,
                addresses=addresses,
            )  # fmt: skip
            details = {"addresses": list(record.addresses)} if record.addresses else {}
            _audit(path, "create join token", f"{service}.{namespace}",
                   token_id=record.token_id, uses=uses, **details)  # fmt: skip
            public = record.public()
        made_tokens.append((secret, public))
    if files:
        _write_token_files(files, made_tokens, output, force)
        return
    if count > 1:
        rows = [{"token": secret, **public} for secret, public in made_tokens]
        emit(output, rows, lambda: click.echo("\n".join(s for s, _ in made_tokens)))
        return
    secret, public = made_tokens[0]
    if output_file is None:
        emit(output, {"token": secret, **public}, lambda: click.echo(secret))
        return
    write_secret_file(output_file, secret + "\n", force=force)
    said = f"wrote join token {public['id']} to {output_file} (mode 0600)"
    emit(output, {"file": str(output_file), **public}, lambda: click.echo(said))


def _token_files(
    service: str, namespace: str, count: int, output_dir: Path | None, force: bool
) -> list[Path]:
    """The files `--output-dir` gets, checked before any token is made."""
    from gossamer.compose.names import join_token_name
    from gossamer.errors import UsageError

    if output_dir is None:
        return []
    try:
        output_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--output-dir {output_dir}: {exc.strerror or exc}") from None
    files = [
        output_dir / join_token_name(service, namespace, None if count == 1 else i + 1)
        for i in range(count)
    ]
    taken = [str(f) for f in files if os.path.lexists(f)]
    if taken and not force:
        raise UsageError(f"{', '.join(taken)} exist(s); not overwriting", hint="pass --force")
    return files


def _write_token_files(
    files: list[Path], made: list[tuple[str, dict[str, object]]], output: str, force: bool
) -> None:
    rows = []
    for path, (secret, public) in zip(files, made, strict=True):
        write_secret_file(path, secret + "\n", force=force)
        rows.append({"file": str(path), **public})
    emit(
        output,
        rows,
        lambda: click.echo(
            "\n".join(f"wrote join token {r['id']} to {r['file']} (mode 0600)" for r in rows)
        ),
    )


@token.command("list")
@ca_dir_option
@api_options
@output_option
def list_tokens(
    directory: Path | None, api: str | None, token: str | None, config: Path | None, output: str
) -> None:
    """List tokens (ids, scope, expiry, status; never secrets): of the CA directory, or
    of the control plane with --api, --token or --config (with the instances they
    admitted; replicas on one etcd list the same)."""
    if api or token or config or os.environ.get("GOSSAMER_API"):
        from gossamer.operator_client import resolve_client

        got = resolve_client(api, token, config).request("GET", "/v1/tokens")
        records = list(got["tokens"])
    else:
        from gossamer.certs.tokens import TokenStore

        records = [r.public() for r in TokenStore(resolve_dir(directory)).list()]
    emit(
        output,
        records,
        lambda: print_table(
            ["id", "service", "namespace", "created", "expires", "uses", "status", "addresses"],
            [
                [
                    r["id"],
                    r["service"],
                    r["namespace"],
                    _when(r["created"]),
                    _when(r["expires"]),
                    f"{r['used']}/{r['uses'] or 'any'}",
                    r["status"],
                    ", ".join(r["addresses"]),
                ]
                for r in records
            ],
        ),
    )


@token.command()
@click.argument("token_id")
@ca_dir_option
@click.option(
    "--keep-certificates",
    is_flag=True,
    help="Through the control plane: leave the certificates the token produced valid.",
)
@api_options
@output_option
def revoke(
    token_id: str,
    directory: Path | None,
    keep_certificates: bool,
    api: str | None,
    token: str | None,
    config: Path | None,
    output: str,
) -> None:
    """Revoke the token with id TOKEN_ID (the second field of the token).

    Through the control plane (--config mesh.yaml, --api, --token or $GOSSAMER_API) this also
    revokes every unexpired certificate the token produced (its sidecars' leaves, renewed
    ones included) unless --keep-certificates; on the CA directory alone it revokes only
    the token."""
    if api or token or config or os.environ.get("GOSSAMER_API"):
        _revoke_through_api(token_id, keep_certificates, api, token, config, output)
        return
    from gossamer.certs.tokens import TokenStore
    from gossamer.errors import UsageError

    if keep_certificates:
        raise UsageError(
            "--keep-certificates goes with the control plane: only it revokes certificates",
            hint="pass --config mesh.yaml or --api URL, or leave --keep-certificates out",
        )

    path = resolve_dir(directory)
    record = TokenStore(path).revoke(token_id)
    _audit(path, "revoke join token", token_id)
    said = (
        f"revoked token {token_id}; the certificates it produced stay valid until they "
        f"expire (revoke them too: gossamer token revoke {token_id} --config mesh.yaml)"
    )
    emit(output, record.public(), lambda: click.echo(said))


def _revoke_through_api(
    token_id: str,
    keep: bool,
    api: str | None,
    token: str | None,
    config: Path | None,
    output: str,
) -> None:
    from gossamer.operator_client import resolve_client

    client = resolve_client(api, token, config)
    query = "?keep_certificates=true" if keep else ""
    record = client.request("DELETE", f"/v1/tokens/{token_id}{query}")
    revoked = record.get("certificates_revoked", [])
    kept = record.get("certificates_kept", [])

    def say() -> None:
        if keep:
            click.echo(f"revoked token {token_id}; kept its {len(kept)} certificate(s) valid")
        elif revoked:
            click.echo(
                f"revoked token {token_id} and the {len(revoked)} certificate(s) it produced: "
                + ", ".join(revoked)
            )
        else:
            click.echo(f"revoked token {token_id}; it had produced no unexpired certificate")

    emit(output, record, say)
