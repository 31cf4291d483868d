"""The `.gossamer/` folder beside an injected compose file: the mesh's bootstrap.

    .gossamer/.gitignore        `*`: nothing here belongs in version control
    .gossamer/ca/               the mesh CA (gossamer.certs), a Compose secret for the
                                control plane, mounted read-only at /etc/gossamer/ca
    .gossamer/tokens/S.token    one join token per meshed service, a Compose secret
                                for its sidecar only
    .gossamer/mesh.yaml         the control plane's configuration (a Compose config)
    .gossamer/prometheus.yml    with --with-observability

The folder is mode 0700, so on the host only its owner reaches anything inside. Token
files are 0644 *within* it because Compose bind-mounts a secret file with its host
permissions and the sidecar runs as UID 1337, not as the file's owner.

Running inject again keeps the CA, keeps each token that stays valid for at least
another day, and rewrites a generated file only if nobody edited it. The only code
that touches `gossamer.certs` is `_open_ca` and `_new_token`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gossamer.compose import meshfiles, names
from gossamer.compose.plan import InjectOptions, Plan
from gossamer.errors import GossamerError, UsageError
from gossamer.fsutil import atomic_write

DEFAULT_TRUST_DOMAIN = "gossamer.local"
DEFAULT_TOKEN_TTL = 30 * 86400.0  # a sidecar presents it at every start, not just the first
_MIN_LEFT = 86400.0


@dataclass
class BootstrapReport:
    directory: Path
    trust_domain: str = DEFAULT_TRUST_DOMAIN
    ca_created: bool = False
    tokens_created: list[str] = field(default_factory=list)
    tokens_kept: list[str] = field(default_factory=list)
    files_written: list[str] = field(default_factory=list)
    files_kept: list[str] = field(default_factory=list)  # edited by the user: left alone


def _open_ca(ca_dir: Path, trust_domain: str | None) -> tuple[str, str, bool]:
    """(trust domain, root pin, created?) of the CA in `ca_dir`, creating it if absent."""
    from gossamer.certs.ca import STATE_FILE, CertificateAuthority

    if (ca_dir / STATE_FILE).exists():
        ca = CertificateAuthority.load(ca_dir)
        if trust_domain is not None and trust_domain != ca.trust_domain:
            raise UsageError(
                f"the CA in {ca_dir} is for trust domain {ca.trust_domain}, not {trust_domain}",
                hint="drop --trust-domain, or move that CA away to start a new mesh",
            )
        return ca.trust_domain, ca.root_pin(), False
    ca = CertificateAuthority.init(ca_dir, trust_domain or DEFAULT_TRUST_DOMAIN)
    return ca.trust_domain, ca.root_pin(), True


def _new_token(ca_dir: Path, pin: str, service: str, namespace: str, ttl: float) -> str:
    from gossamer.certs.tokens import TokenStore

    token, _record = TokenStore(ca_dir).create(service, pin, namespace=namespace, ttl=ttl)
    return token


def _token_usable(
    ca_dir: Path, token: str, service: str, namespace: str, now: Callable[[], float]
) -> bool:
    from gossamer.certs.errors import TokenError
    from gossamer.certs.tokens import TokenStore

    try:
        record = TokenStore(ca_dir, clock=now).verify(token, service=service, namespace=namespace)
    except TokenError:
        return False
    return record.expires - now() >= _MIN_LEFT


def _write_generated(path: Path, text: str, report: BootstrapReport) -> None:
    rel = str(path.relative_to(report.directory.parent))
    if path.exists():
        current = path.read_text(encoding="utf-8")
        if current == text:
            return
        if not meshfiles.untouched(current):
            report.files_kept.append(rel)
            return
    atomic_write(path, text, mode=0o644)
    report.files_written.append(rel)


def write_bootstrap(
    base: Path,
    plan: Plan,
    options: InjectOptions,
    *,
    source: str,
    trust_domain: str | None = None,
    token_ttl: float = DEFAULT_TOKEN_TTL,
    clock: Callable[[], float] = time.time,
) -> BootstrapReport:
    """Create or refresh `base/.gossamer/` for the services in `plan`."""
    folder = base / names.BOOTSTRAP_DIR
    report = BootstrapReport(directory=folder)
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
        ignore = folder / ".gitignore"
        if not ignore.exists():
            atomic_write(ignore, "# secrets of the mesh: never commit them\n*\n")
        ca_dir = base / names.CA_DIR
        report.trust_domain, pin, report.ca_created = _open_ca(ca_dir, trust_domain)
        tokens = base / names.BOOTSTRAP_DIR / "tokens"
        tokens.mkdir(mode=0o700, exist_ok=True)
        for sp in plan.meshed:
            path = base / names.token_file(sp.name)
            if path.exists() and _token_usable(
                ca_dir,
                path.read_text(encoding="utf-8").strip(),
                sp.mesh_name,
                options.namespace,
                clock,
            ):
                report.tokens_kept.append(sp.name)
                continue
            token = _new_token(ca_dir, pin, sp.mesh_name, options.namespace, token_ttl)
            atomic_write(path, token + "\n", mode=0o644)
            report.tokens_created.append(sp.name)
        mesh = meshfiles.mesh_yaml(
            plan, trust_domain=report.trust_domain, namespace=options.namespace, source=source
        )
        _write_generated(base / names.MESH_FILE, mesh, report)
        if options.observability:
            _write_generated(base / names.PROMETHEUS_FILE, meshfiles.prometheus_yml(source), report)
    except OSError as exc:
        raise GossamerError(
            f"cannot write the bootstrap files in {folder}: {exc.strerror or exc}",
            hint="check the permissions of that folder",
        ) from None
    return report
