"""The `.gossamer/` folder beside an injected compose file: the mesh's bootstrap.

    .gossamer/.gitignore        `*`: nothing here belongs in version control
    .gossamer/ca/               the mesh CA (gossamer.certs), a Compose secret for the
                                control plane, mounted read-only at /etc/gossamer/ca
    .gossamer/tokens/S.token    one join token per meshed service, a Compose secret
                                for its sidecar only
    .gossamer/mesh.yaml         the control plane's configuration (a Compose config)
    .gossamer/prometheus.yml    with --with-observability
    .gossamer/prometheus.token  with --with-observability: a viewer API token, a Compose
                                secret for Prometheus (its http_sd `credentials_file`)
                                and the control plane (mesh.yaml's
                                `observability.prometheus_token_file`)

The folder is mode 0700, so on the host only its owner reaches anything inside. Token
files are 0644 *within* it because Compose bind-mounts a secret file with its host
permissions and the sidecar runs as UID 1337 (Prometheus as 65534), not as the file's
owner; inject runs as that owner, who cannot give the file to another user. With
`--bootstrap volumes` the bootstrap container (root) writes them 0400 and owned by the
user that reads them instead.

Running inject again keeps the CA, keeps each token that stays valid for at least
another day, and rewrites a generated file only if nobody edited it. The only code
that touches `gossamer.certs` is `_open_ca`, `_new_tokens` and `_usable_tokens`. A
symbolic link at or inside the folder is refused before anything is written
(`folder_guard`).
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from gossamer.compose import folder_guard, generated_files, names
from gossamer.compose.options import InjectOptions
from gossamer.compose.plan import Plan, ServicePlan
from gossamer.errors import GossamerError, UsageError
from gossamer.fsutil import atomic_write, atomic_write_many

DEFAULT_TRUST_DOMAIN = "gossamer.local"
DEFAULT_TOKEN_TTL = 30 * 86400.0  # a sidecar presents it at every start, not just the first
_MIN_LEFT = 86400.0
_MIN_SECRET = 16  # characters: what the control plane accepts in a token file


@dataclass
class BootstrapReport:
    directory: Path
    trust_domain: str = DEFAULT_TRUST_DOMAIN
    ca_created: bool = False
    tokens_created: list[str] = field(default_factory=list)
    tokens_kept: list[str] = field(default_factory=list)
    files_written: list[str] = field(default_factory=list)
    files_kept: list[str] = field(default_factory=list)  # edited by the user: left alone
    prometheus_token: str = ""  # with observability: "created" or "kept"


def _open_ca(ca_dir: Path, trust_domain: str | None) -> tuple[str, str, bool]:
    """(trust domain, root pin, created?) of the CA in `ca_dir`, creating it if absent."""
    from gossamer.certs.ca import CertificateAuthority
    from gossamer.certs.ca_files import STATE_FILE

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


def _new_tokens(
    ca_dir: Path, pin: str, services: list[str], namespace: str, ttl: float
) -> list[str]:
    """One new token per entry of `services`, stored with a single write."""
    from gossamer.certs.tokens import TokenStore

    made = TokenStore(ca_dir).create_many(services, pin, namespace=namespace, ttl=ttl)
    return [token for token, _record in made]


def _usable_tokens(
    ca_dir: Path, wanted: list[tuple[str, str, Path]], namespace: str, now: Callable[[], float]
) -> set[Path]:
    """The token files of `wanted` whose token stays valid for at least another day (one
    store, so `tokens.json` is read once, not once per service)."""
    from gossamer.certs.errors import TokenError
    from gossamer.certs.tokens import TokenStore

    store = TokenStore(ca_dir, clock=now)
    usable = set()
    for _label, service, path in wanted:
        if not path.exists():
            continue
        token = path.read_text(encoding="utf-8").strip()
        try:
            record = store.verify(token, service=service, namespace=namespace)
        except TokenError:
            continue
        if record.expires - now() >= _MIN_LEFT:
            usable.add(path)
    return usable


def ensure_api_token_file(path: Path, *, mode: int, owner: tuple[int, int] | None = None) -> bool:
    """A random API token in `path` unless it holds one already (True: written). The
    control plane accepts it through mesh.yaml's `observability.prometheus_token_file`."""
    try:
        kept = len(path.read_text(encoding="utf-8").strip()) >= _MIN_SECRET
    except (FileNotFoundError, UnicodeDecodeError):
        kept = False
    if not kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, "gsa1_" + secrets.token_urlsafe(32) + "\n", mode=mode)
    if owner is not None:
        os.chown(path, *owner, follow_symlinks=False)
    os.chmod(path, mode, follow_symlinks=False)
    return not kept


@dataclass
class TokenReport:
    created: list[str] = field(default_factory=list)  # token files written
    kept: list[str] = field(default_factory=list)  # still valid for at least a day
    prometheus_token: str = ""  # asked for: "created" or "kept"


def ensure_tokens(
    ca_dir: Path,
    wanted: list[tuple[str, str, Path]],
    *,
    pin: str,
    namespace: str,
    ttl: float = DEFAULT_TOKEN_TTL,
    owner: tuple[int, int] | None = None,
    mode: int = 0o644,
    clock: Callable[[], float] = time.time,
) -> TokenReport:
    """For each (label, mesh service, file): keep the file's token if it stays valid for
    another day, else write a new one. `owner` (uid, gid) gets the file (run as root).
    New tokens are stored in one write of `tokens.json` and their files written as one
    batch, so N services cost O(N), not N rewrites of the store."""
    report = TokenReport()
    usable = _usable_tokens(ca_dir, wanted, namespace, clock)
    missing = [(label, service, path) for label, service, path in wanted if path not in usable]
    tokens = _new_tokens(ca_dir, pin, [service for _, service, _ in missing], namespace, ttl)
    for folder in {path.parent for _, _, path in missing}:
        folder.mkdir(parents=True, exist_ok=True)
    atomic_write_many(
        [(path, token + "\n") for (_, _, path), token in zip(missing, tokens, strict=True)],
        mode=mode,
    )
    fresh = {path for _, _, path in missing}
    for label, _service, path in wanted:
        (report.created if path in fresh else report.kept).append(label)
        if owner is not None:
            os.chown(path, *owner, follow_symlinks=False)
    return report


def ensure_gateway_token(
    ca_dir: Path,
    path: Path,
    *,
    pin: str,
    address: str,
    ttl: float = DEFAULT_TOKEN_TTL,
    clock: Callable[[], float] = time.time,
) -> bool:
    """The node gateway's join token (service gateway, namespace gossamer-system),
    allowing it to register `address` (its advertised host: the control plane sees it
    connect from its container's address). Kept while valid for another day and
    allowing `address`; True when a new one was written."""
    from gossamer.certs.errors import TokenError
    from gossamer.certs.tokens import TokenStore
    from gossamer.contract.identity import CONTROL_NAMESPACE, GATEWAY_SERVICE

    store = TokenStore(ca_dir, clock=clock)
    if path.exists():
        try:
            record = store.verify(
                path.read_text(encoding="utf-8").strip(),
                service=GATEWAY_SERVICE,
                namespace=CONTROL_NAMESPACE,
            )
            if record.expires - clock() >= _MIN_LEFT and address.lower() in record.addresses:
                return False
        except TokenError:
            pass
    [(token, _record)] = store.create_many(
        [GATEWAY_SERVICE], pin, namespace=CONTROL_NAMESPACE, ttl=ttl, addresses=[address]
    )
    atomic_write(path, token + "\n", mode=0o644)
    return True


def bootstrap_volume(
    ca_dir: Path,
    wanted: list[tuple[str, Path]],
    *,
    trust_domain: str,
    namespace: str,
    ttl: float = DEFAULT_TOKEN_TTL,
    owner: tuple[int, int] | None = None,
    prometheus_token: Path | None = None,
    prometheus_owner: tuple[int, int] | None = None,
) -> tuple[bool, TokenReport]:
    """`gossamer certs bootstrap`: the CA in `ca_dir` (created if absent) and a join token
    per (mesh service, file), readable only by `owner` (the sidecar's user); and, if
    asked, Prometheus's API token file readable only by `prometheus_owner`."""
    from gossamer.contract.identity import check_label

    for service, _path in wanted:  # before anything is written
        check_label(service, "service")
    check_label(namespace, "namespace")
    try:
        _, pin, created = _open_ca(ca_dir, trust_domain)
        labelled = [(f"{service} ({path})", service, path) for service, path in wanted]
        report = ensure_tokens(
            ca_dir, labelled, pin=pin, namespace=namespace, ttl=ttl, owner=owner, mode=0o400
        )
        if prometheus_token is not None:
            created_now = ensure_api_token_file(
                prometheus_token, mode=0o400, owner=prometheus_owner
            )
            report.prometheus_token = "created" if created_now else "kept"
    except OSError as exc:
        raise GossamerError(
            f"cannot write the bootstrap files: {exc.strerror or exc}",
            hint="run as root, with the CA and token folders mounted writable",
        ) from None
    return created, report


def _write_generated(path: Path, text: str, report: BootstrapReport) -> None:
    rel = str(path.relative_to(report.directory.parent))
    if path.exists():
        current = path.read_text(encoding="utf-8")
        if current == text:
            return
        if not generated_files.untouched(current):
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
    declared: tuple[ServicePlan, ...] = (),
) -> BootstrapReport:
    """Create or refresh `base/.gossamer/` for the services in `plan` (mesh.yaml also
    declares `declared`: services of other hosts' files, `inject --services-of`)."""
    folder = base / names.BOOTSTRAP_DIR
    report = BootstrapReport(directory=folder)
    folder_guard.check_folder(folder)  # before anything is written
    try:
        folder_guard.make_folder(folder)
        ca_dir = base / names.CA_DIR
        report.trust_domain, pin, report.ca_created = _open_ca(ca_dir, trust_domain)
        tokens = base / names.BOOTSTRAP_DIR / "tokens"
        tokens.mkdir(mode=0o700, exist_ok=True)
        wanted = [(sp.name, sp.mesh_name, base / names.token_file(sp.name)) for sp in plan.meshed]
        made = ensure_tokens(
            ca_dir, wanted, pin=pin, namespace=options.namespace, ttl=token_ttl, clock=clock
        )
        report.tokens_created, report.tokens_kept = made.created, made.kept
        if options.node is not None and options.advertise_host is not None:
            gateway = ensure_gateway_token(
                ca_dir, base / names.token_file(names.GATEWAY), pin=pin,
                address=options.advertise_host, ttl=token_ttl, clock=clock,
            )  # fmt: skip
            (report.tokens_created if gateway else report.tokens_kept).append(names.GATEWAY)
        if options.observability:
            # 0644 inside the 0700 folder, as the join tokens: Prometheus runs as 65534
            token_path = base / names.PROMETHEUS_TOKEN_FILE
            created = ensure_api_token_file(token_path, mode=0o644)
            report.prometheus_token = "created" if created else "kept"
        mesh = generated_files.mesh_yaml(
            replace(plan, meshed=plan.meshed + declared),
            trust_domain=report.trust_domain,
            namespace=options.namespace,
            source=source,
            observability=options.observability,
            store=options.etcd,
        )
        _write_generated(base / names.MESH_FILE, mesh, report)
        if options.observability:
            _write_generated(
                base / names.PROMETHEUS_FILE, generated_files.prometheus_yml(source), report
            )
    except OSError as exc:
        raise GossamerError(
            f"cannot write the bootstrap files in {folder}: {exc.strerror or exc}",
            hint="check the permissions of that folder",
        ) from None
    return report
