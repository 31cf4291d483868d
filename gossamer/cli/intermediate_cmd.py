"""`gossamer certs intermediate` and its CSR flow: an intermediate per control-plane replica.

On the host holding the root, `intermediate --out DIR` makes a replica's CA directory in
one command. For a replica on another host, so that no private key crosses hosts:
`intermediate-csr` there, `sign-intermediate` on the root's host, `install-intermediate`
back there (certs/intermediates.py). DIR then holds the replica's intermediate and key,
the trusted roots (no root key) and `chain.pem`; point the replica's `control.ca_dir`
at it.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from gossamer.cli.output import emit, output_option

RootDir = click.Path(file_okay=False, path_type=Path)


def _ttl(text: str | None) -> float | None:
    if text is None:
        return None
    from gossamer.cli.certs_cmd import parse_ttl

    return parse_ttl(text)


def _summary(ca_dir: Path) -> dict[str, object]:
    from gossamer.certs.ca import CertificateAuthority

    ca = CertificateAuthority.load(ca_dir)
    inter = ca._generation(ca.active).intermediate
    return {
        "directory": str(ca_dir),
        "replica": ca.replica,
        "trust_domain": ca.trust_domain,
        "generation": ca.active,
        "intermediate": inter.subject.rfc4514_string(),
        "not_after": inter.not_valid_after_utc.isoformat(),
        "root_pin": ca.root_pin(),
    }


def _report(output: str, data: dict[str, object]) -> None:
    emit(
        output,
        data,
        lambda: click.echo(
            f"replica {data['replica']}: intermediate of root generation "
            f"{data['generation']} in {data['directory']} (no root key there), valid until "
            f"{str(data['not_after'])[:10]}\nroot pin: {data['root_pin']}\n"
            f"point the replica's control.ca_dir at {data['directory']}"
        ),
    )


@click.command("intermediate")
@click.option("--out", required=True, type=RootDir, help="The replica's CA directory.")
@click.option("--ca-dir", type=RootDir, default=None,
              help="The root CA [default: $GOSSAMER_CA_DIR or ./.gossamer/ca].")  # fmt: skip
@click.option("--name", default=None, help="The replica's name [default: this host's name].")
@click.option("--ttl", default=None, help="Lifetime of the intermediate [default and cap: 1 year].")
@output_option
def intermediate(
    out: Path, ca_dir: Path | None, name: str | None, ttl: str | None, output: str
) -> None:
    """Issue a control-plane replica its own intermediate from the root, in OUT.

    The key is made in OUT and stays there; OUT gets no root key. Run again after
    `rotate-root` to add an intermediate of the new root (the old one is kept until
    its root is retired). For a replica on another host use intermediate-csr."""
    from gossamer.certs.ca import CertificateAuthority
    from gossamer.certs.intermediates import default_name, issue_local
    from gossamer.cli.certs_cmd import resolve_dir

    root = CertificateAuthority.load(resolve_dir(ca_dir))
    issue_local(root, out, name or default_name(), ttl=_ttl(ttl))
    _report(output, _summary(out))


@click.command("intermediate-csr")
@click.option("--out", required=True, type=RootDir, help="The replica's CA directory.")
@click.option("--name", default=None, help="The replica's name [default: this host's name].")
def intermediate_csr(out: Path, name: str | None) -> None:
    """On a replica's host: make its intermediate key in OUT and print the CSR.

    Take OUT/intermediate.csr to the root's host (sign-intermediate), bring the signed
    file back (install-intermediate). The key never leaves OUT."""
    from gossamer.certs.intermediates import CSR_FILE, default_name, request

    csr = request(out, name or default_name())
    click.echo(csr.decode(), nl=False)
    click.echo(f"wrote {out / CSR_FILE}; the key stays in {out}", err=True)


@click.command("sign-intermediate")
@click.option("--csr", "csr_file", required=True,
              type=click.Path(dir_okay=False, path_type=Path), help="A replica's CSR.")  # fmt: skip
@click.option("--ca-dir", type=RootDir, default=None,
              help="The root CA [default: $GOSSAMER_CA_DIR or ./.gossamer/ca].")  # fmt: skip
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the signed intermediate (JSON, nothing secret).")  # fmt: skip
@click.option("--ttl", default=None, help="Lifetime of the intermediate [default and cap: 1 year].")
def sign_intermediate(csr_file: Path, ca_dir: Path | None, out: Path, ttl: str | None) -> None:
    """On the root's host: sign a replica's intermediate CSR under the newest root."""
    from gossamer.certs.ca import CertificateAuthority
    from gossamer.certs.intermediates import sign
    from gossamer.cli.certs_cmd import read_file, resolve_dir
    from gossamer.fsutil import atomic_write

    root = CertificateAuthority.load(resolve_dir(ca_dir))
    signed = sign(root, read_file(csr_file, "CSR"), ttl=_ttl(ttl))
    atomic_write(out, json.dumps(signed, indent=2) + "\n")
    click.echo(
        f"signed the intermediate of replica {signed['replica']} (root generation "
        f"{signed['generation']}) into {out}; install it on the replica's host with: "
        f"gossamer certs install-intermediate --dir DIR --signed {out.name}"
    )


@click.command("install-intermediate")
@click.option("--dir", "directory", required=True, type=RootDir,
              help="The replica's CA directory (where intermediate-csr ran).")  # fmt: skip
@click.option("--signed", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The file sign-intermediate wrote.")  # fmt: skip
@output_option
def install_intermediate(directory: Path, signed: Path, output: str) -> None:
    """On a replica's host: install the signed intermediate beside its key."""
    from gossamer.certs.intermediates import install, read_signed

    install(directory, read_signed(signed))
    _report(output, _summary(directory))
