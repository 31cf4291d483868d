"""`gossamer certs`: create the mesh CA, issue leaves from CSRs, rotate roots, inspect;
`revoke` and `revoked` (gossamer/cli/revoke_cmd.py) go through the control plane."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from gossamer.cli.intermediate_cmd import (
    install_intermediate,
    intermediate,
    intermediate_csr,
    sign_intermediate,
)
from gossamer.cli.output import emit, output_option, print_table
from gossamer.cli.revoke_cmd import revoke, revoked
from gossamer.errors import GossamerError, UsageError
from gossamer.yamlconf import parse_duration

F = TypeVar("F", bound=Callable[..., Any])


def ca_dir_option(func: F) -> F:
    return click.option(
        "--dir",
        "directory",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="CA directory [default: $GOSSAMER_CA_DIR or ./.gossamer/ca].",
    )(func)


def store_option(func: F) -> F:
    return click.option(
        "--store",
        default=None,
        metavar="etcd://HOST:PORT[,...][/prefix]",
        help="Also publish the new trust bundle to the control-plane replicas sharing "
        "this etcd (their control.store).",
    )(func)


def publish_bundle(store: str | None, directory: Path, *, changed: bool = True) -> str:
    """Put the CA's bundle in the replicas' etcd; what to tell the operator."""
    if store is None:
        return ""
    import asyncio

    from gossamer.certs.ca import CertificateAuthority
    from gossamer.control.etcd_security import publish_bundle as publish

    ca = CertificateAuthority.load(directory)
    try:
        asyncio.run(publish(store, ca.trust_bundle_pem(), data_dir=directory))
    except GossamerError as exc:
        if not changed:
            raise
        raise GossamerError(
            f"the CA in {directory} changed, but its bundle was not published: {exc.message}",
            hint=exc.hint
            or f"publish it again with: gossamer certs bundle --dir {directory} --store {store}",
        ) from None
    return f"\npublished the trust bundle ({len(ca.roots())} root(s)) to every replica via {store}"


def resolve_dir(directory: Path | None) -> Path:
    from gossamer.certs.ca import default_ca_dir

    return directory if directory is not None else default_ca_dir()


def read_file(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise GossamerError(f"cannot read {what} {path}: {exc.strerror}") from None


def parse_ttl(text: str) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"--ttl: {exc}") from None
    if seconds <= 0:
        raise UsageError("--ttl must be positive")
    return seconds


@click.group()
def certs() -> None:
    """Manage the mesh CA: roots, intermediates, SPIFFE leaf certificates."""


for _command in (revoke, revoked, intermediate, intermediate_csr, sign_intermediate,
                 install_intermediate):  # fmt: skip
    certs.add_command(_command)


@certs.command()
@click.option("--trust-domain", required=True, help="SPIFFE trust domain, e.g. gossamer.local.")
@ca_dir_option
@click.option("--force", is_flag=True, help="Replace an existing CA (its leaves stop verifying).")
@click.option(
    "--root-cert",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Bring your own root: its certificate (PEM).",
)
@click.option(
    "--root-key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Bring your own root: its private key (PEM).",
)
@output_option
def init(
    trust_domain: str,
    directory: Path | None,
    force: bool,
    root_cert: Path | None,
    root_key: Path | None,
    output: str,
) -> None:
    """Create a root CA (ECDSA P-256, 10 years) and an intermediate (1 year)."""
    from gossamer.certs.ca import CertificateAuthority

    if (root_cert is None) != (root_key is None):
        raise UsageError("--root-cert and --root-key go together")
    cert_pem = read_file(root_cert, "root certificate") if root_cert else None
    key_pem = read_file(root_key, "root key") if root_key else None
    path = resolve_dir(directory)
    ca = CertificateAuthority.init(
        path, trust_domain, force=force, root_cert_pem=cert_pem, root_key_pem=key_pem
    )
    data = {"directory": str(path), "trust_domain": ca.trust_domain, "root_pin": ca.root_pin()}
    emit(
        output,
        data,
        lambda: click.echo(
            f"created the CA for {ca.trust_domain} in {path}\nroot pin: {ca.root_pin()}"
        ),
    )


def parse_leaf_ttl(text: str) -> float:
    """`certs issue --ttl`: at most MAX_TTL_CAP (720 h), the longest lifetime any leaf
    has (the control plane keeps a revocation whose leaf it does not know that long)."""
    from gossamer.durations import format_duration
    from gossamer.meshconfig.schema import MAX_TTL_CAP

    seconds = parse_ttl(text)
    if seconds > MAX_TTL_CAP:
        raise UsageError(
            f"--ttl: a leaf may live at most {format_duration(MAX_TTL_CAP)}, not {text}",
            hint="the longest leaf lifetime, as for control.max_cert_ttl; issue a new leaf "
            "before it expires",
        )
    return seconds


@certs.command()
@click.option(
    "--csr",
    "csr_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The CSR (PEM or DER).",
)
@click.option("--identity", required=True, help="spiffe://<td>/ns/<namespace>/sa/<service>")
@ca_dir_option
@click.option(
    "--ttl", default="24h", show_default=True, help="Lifetime of the leaf (at most 720h)."
)
@click.option("--allow-dns", multiple=True, help="DNS name the CSR may carry (repeatable).")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the chain here instead of stdout.",
)
def issue(
    csr_file: Path,
    identity: str,
    directory: Path | None,
    ttl: str,
    allow_dns: tuple[str, ...],
    out: Path | None,
) -> None:
    """Sign a CSR for IDENTITY; prints the leaf + intermediate chain (PEM)."""
    from gossamer.certs.ca import CertificateAuthority

    ca = CertificateAuthority.load(resolve_dir(directory))
    issued = ca.issue(
        read_file(csr_file, "CSR"), identity, parse_leaf_ttl(ttl), allowed_dns=allow_dns
    )
    if out is not None:
        out.write_bytes(issued.chain_pem)
        click.echo(
            f"wrote {out} ({issued.spiffe_id}, expires {issued.not_after:%Y-%m-%d %H:%M}Z)",
            err=True,
        )
    else:
        click.echo(issued.chain_pem.decode(), nl=False)


@certs.command("rotate-root")
@ca_dir_option
@click.option(
    "--propagation",
    default="15s",
    show_default=True,
    help="Trust the new root at once; issue from it after this delay.",
)
@store_option
@output_option
def rotate_root(directory: Path | None, propagation: str, store: str | None, output: str) -> None:
    """Create a new root and intermediate; issue from them; keep trusting the old root.

    Replicas with their own intermediates (certs intermediate) then each need an
    intermediate of the new root: run certs intermediate (or the CSR flow) again."""
    from gossamer.certs.ca import CertificateAuthority

    try:
        delay = parse_duration(propagation)
    except ValueError as exc:
        raise UsageError(f"--propagation: {exc}") from None
    ca = CertificateAuthority.load(resolve_dir(directory))
    number = ca.rotate_root(delay)
    note = publish_bundle(store, ca.directory)
    data = {"active_generation": number, "trusted_generations": [g.number for g in ca.generations]}
    emit(
        output,
        data,
        lambda: click.echo(
            f"generation {number} is now active; the bundle trusts generations "
            f"{', '.join(str(g.number) for g in ca.generations)}.\n"
            "Once every leaf has been renewed, run: gossamer certs retire-root" + note
        ),
    )


@certs.command("retire-root")
@ca_dir_option
@click.option("--generation", type=int, default=None, help="Retire only this generation.")
@store_option
@output_option
def retire_root(
    directory: Path | None, generation: int | None, store: str | None, output: str
) -> None:
    """Remove old roots from the trust bundle (leaves they signed stop verifying)."""
    from gossamer.certs.ca import CertificateAuthority

    ca = CertificateAuthority.load(resolve_dir(directory))
    retired = ca.retire_root(generation)
    note = publish_bundle(store, ca.directory)
    emit(
        output,
        {"retired_generations": retired, "active_generation": ca.active},
        lambda: click.echo(f"retired generation(s) {', '.join(map(str, retired))}" + note),
    )


@certs.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@output_option
def inspect(file: Path, output: str) -> None:
    """Show subject, SPIFFE ID, validity, time left and the issuer chain of FILE."""
    from gossamer.certs.inspect import describe_chain, human_duration

    data = describe_chain(read_file(file, "certificate file"))

    def render() -> None:
        rows = [
            [
                i,
                "CA" if c["ca"] else "leaf",
                c["subject"] or "-",
                c["spiffe_id"] or "-",
                c["not_after"][:19] + "Z",
                human_duration(c["seconds_left"]),
                c["serial"],
                c["issuer"],
            ]
            for i, c in enumerate(data["certificates"])
        ]
        columns = ["#", "kind", "subject", "spiffe id", "not after", "left", "serial", "issuer"]
        print_table(columns, rows)
        if len(rows) > 1:
            click.echo(
                "chain: "
                + (
                    "each certificate is issued by the next"
                    if data["chain_links_ok"]
                    else "BROKEN: a certificate is not issued by the next"
                )
            )

    emit(output, data, render)


@certs.command()
@ca_dir_option
@store_option
def bundle(directory: Path | None, store: str | None) -> None:
    """Print the trust bundle (every trusted root, PEM), or publish it with --store."""
    from gossamer.certs.ca import CertificateAuthority

    if store is not None:
        click.echo(publish_bundle(store, resolve_dir(directory), changed=False).strip())
        return
    click.echo(
        CertificateAuthority.load(resolve_dir(directory)).trust_bundle_pem().decode(), nl=False
    )


def _token_target(text: str) -> tuple[str, Path]:
    service, sep, path = text.partition("=")
    if not sep or not service or not path:
        raise UsageError(f"--token {text!r}: expected SERVICE=FILE")
    return service, Path(path)


def _owner(text: str | None, flag: str = "--owner") -> tuple[int, int] | None:
    if text is None:
        return None
    uid, _, gid = text.partition(":")
    if not uid.isdigit() or not (gid or uid).isdigit():
        raise UsageError(f"{flag} {text!r}: expected UID or UID:GID")
    return int(uid), int(gid or uid)


@certs.command("bootstrap")
@ca_dir_option
@click.option("--trust-domain", default="gossamer.local", show_default=True)
@click.option("--namespace", default="default", show_default=True)
@click.option(
    "--token",
    "tokens",
    multiple=True,
    metavar="SERVICE=FILE",
    help="Write a join token for SERVICE to FILE (repeatable).",
)
@click.option("--ttl", default="720h", show_default=True, help="Lifetime of new tokens.")
@click.option("--owner", default=None, metavar="UID[:GID]", help="Give the token files to.")
@click.option(
    "--prometheus-token",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write a random API token to this file unless it holds one (mode 0400): "
    "the viewer token Prometheus reads /v1/http_sd with, which the control plane accepts "
    "through mesh.yaml's observability.prometheus_token_file.",
)
@click.option(
    "--prometheus-owner",
    default="65534:65534",
    show_default=True,
    metavar="UID[:GID]",
    help="Give the --prometheus-token file to (prom/prometheus runs as nobody).",
)
def bootstrap(
    directory: Path | None,
    trust_domain: str,
    namespace: str,
    tokens: tuple[str, ...],
    ttl: str,
    owner: str | None,
    prometheus_token: Path | None,
    prometheus_owner: str,
) -> None:
    """Make sure a CA exists in --dir and each FILE holds a valid join token for SERVICE.

    Creates the CA only if the folder has none, and a token only if FILE lacks one that
    stays valid for another day (mode 0400, owned by --owner), so running it at every
    start changes nothing that still works. Each token admits one sidecar instance (the
    one FILE is mounted in, which presents it again under the same instance id when it
    restarts or is recreated). `gossamer inject --bootstrap volumes` runs
    it in a one-shot container at `docker compose up`.
    """
    from gossamer.compose.bootstrap import bootstrap_volume

    wanted = [_token_target(t) for t in tokens]
    created, report = bootstrap_volume(
        resolve_dir(directory),
        wanted,
        trust_domain=trust_domain,
        namespace=namespace,
        ttl=parse_ttl(ttl),
        owner=_owner(owner),
        prometheus_token=prometheus_token,
        prometheus_owner=_owner(prometheus_owner, "--prometheus-owner")
        if prometheus_token
        else None,
    )
    click.echo(
        f"CA {'created' if created else 'kept'} in {resolve_dir(directory)}; "
        f"join tokens: {len(report.created)} created, {len(report.kept)} kept "
        "(each admits one sidecar instance, which may restart with it)"
        + (f"; Prometheus's API token {report.prometheus_token}" if prometheus_token else "")
    )
