"""The `.gossamer/` folder of a host that joins an existing mesh (`inject --join`).

Such a host makes no CA and no token: what its containers need was prepared on the
CA's host and copied here (docs/architecture.md, "Compose integration"):

    --token-dir DIR     one join token per meshed Compose service S, in DIR/S.token
                        (DIR/S.NAMESPACE.token with --namespace), and the node
                        gateway's, DIR/gateway.gossamer-system.token; the names
                        `gossamer token create --output-dir DIR` writes. They are copied
                        to .gossamer/tokens/ (the Compose secrets), so DIR can go away;
                        without --token-dir those copies must be there already.
    --intermediate DIR  with --control-replica: the replica's CA directory (`gossamer
                        certs intermediate --out DIR` on the root's host; no root key),
                        copied to .gossamer/ca/.
    --mesh-file F       with --control-replica: the first host's .gossamer/mesh.yaml. A
                        replica must declare the same services as the others on its
                        etcd store (each replica syncs mesh.yaml's services into the
                        shared registry), so its mesh.yaml is F with the store replaced
                        by --etcd when given. F's store must be etcd.
    --services-of F     on the first host: another host's compose file, whose meshed
                        services this control plane's mesh.yaml declares too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gossamer.compose import folder_guard, names
from gossamer.compose.options import InjectOptions
from gossamer.compose.plan import Plan, ServicePlan
from gossamer.errors import ConfigError, GossamerError, UsageError
from gossamer.fsutil import atomic_write

_ROOT_KEY_PREFIX = "root-"


@dataclass(frozen=True)
class JoinInputs:
    """Files from the CA's host (not recorded in the compose file: they are secrets)."""

    token_dir: Path | None = None
    intermediate: Path | None = None
    mesh_file: Path | None = None
    services_of: tuple[Path, ...] = ()  # host 1: the other hosts' compose files


@dataclass
class JoinReport:
    directory: Path
    tokens_copied: list[str]
    tokens_kept: list[str]
    ca_copied: bool = False
    mesh_written: bool = False


def check_inputs(options: InjectOptions, inputs: JoinInputs) -> None:
    """Flags that only make sense together (UsageError)."""
    if not options.join and (inputs.token_dir or inputs.intermediate or inputs.mesh_file):
        raise UsageError("--token-dir, --intermediate and --mesh-file go with --join")
    if not options.control_replica and (inputs.intermediate or inputs.mesh_file):
        raise UsageError("--intermediate and --mesh-file go with --control-replica")
    if inputs.services_of and (options.join or options.node is None):
        raise UsageError(
            "--services-of goes with --node on the host that runs the control plane",
            hint="a joining host's services are declared in that host's mesh.yaml",
        )


def services_of(paths: tuple[Path, ...], options: InjectOptions) -> tuple[ServicePlan, ...]:
    """The services other hosts' compose files mesh (as `inject` would there, without
    --only/--exclude): declared in this control plane's mesh.yaml, since a service the
    control plane does not declare gets no clusters, routes or inbound listener."""
    from gossamer.compose.document import load_compose
    from gossamer.compose.plan import make_plan
    from gossamer.compose.workflow import read_compose

    found: list[ServicePlan] = []
    plain = InjectOptions(mode=options.mode, namespace=options.namespace)
    for path in paths:
        doc = load_compose(read_compose(path), str(path))
        found += make_plan(doc, plain).meshed
    return tuple(found)


def _token_text(path: Path) -> str:
    from gossamer.certs.errors import TokenError
    from gossamer.certs.token_rules import parse_token

    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the join token {path}: {exc}") from None
    try:
        parse_token(text)
    except TokenError as exc:
        raise ConfigError(f"{path}: {exc.message}", hint=exc.hint) from None
    return text + "\n"


def wanted_tokens(plan: Plan, options: InjectOptions) -> list[tuple[str, str]]:
    """(file name in --token-dir, file under .gossamer/) of every token this host needs."""
    pairs = [
        (names.join_token_name(sp.name, options.namespace), names.token_file(sp.name))
        for sp in plan.meshed
    ]
    if options.node is not None:
        gateway = names.join_token_name("gateway", "gossamer-system")
        pairs.append((gateway, names.token_file(names.GATEWAY)))
    return pairs


def _copy_tokens(base: Path, plan: Plan, options: InjectOptions, token_dir: Path | None,
                 report: JoinReport) -> None:  # fmt: skip
    missing: list[str] = []
    if token_dir is not None and not token_dir.is_dir():
        raise UsageError(f"--token-dir {token_dir}: not a directory")
    for name, target in wanted_tokens(plan, options):
        source = token_dir / name if token_dir is not None else None
        dest = base / target
        if source is not None and source.is_file():
            text = _token_text(source)
            if not dest.exists() or dest.read_text(encoding="utf-8") != text:
                atomic_write(dest, text, mode=0o644)  # the sidecar's UID reads it
            report.tokens_copied.append(name)
        elif dest.is_file():
            report.tokens_kept.append(name)
        else:
            missing.append(name)
    if missing:
        where = f"in {token_dir}" if token_dir is not None else "(no --token-dir given)"
        raise ConfigError(
            f"join token(s) missing {where}: {', '.join(missing)}",
            hint="on the CA's host: gossamer token create --service S --allow-address S "
            "--output-dir DIR for each (the gateway's: --service gateway --namespace "
            "gossamer-system --allow-address ADVERTISE_HOST), then copy DIR here",
        )


def _copy_intermediate(source: Path, target: Path) -> None:
    if not (source / "ca.json").is_file():
        raise UsageError(
            f"--intermediate {source}: not a CA directory (no ca.json)",
            hint="on the root's host: gossamer certs intermediate --out DIR --name NODE",
        )
    files = [p for p in sorted(source.iterdir()) if p.name != ".lock"]
    if any(p.name.startswith(_ROOT_KEY_PREFIX) and p.name.endswith(".key") for p in files):
        raise UsageError(
            f"--intermediate {source} holds a root key: that is the root CA, not a replica's",
            hint="on the root's host: gossamer certs intermediate --out DIR --name NODE",
        )
    bad = [p.name for p in files if p.is_symlink() or not p.is_file()]
    if bad:
        raise UsageError(f"--intermediate {source}: not a plain file: {', '.join(bad)}")
    target.mkdir(mode=0o700, parents=True, exist_ok=True)
    for path in files:
        data = path.read_bytes()
        mode = 0o600 if path.suffix == ".key" else 0o644
        dest = target / path.name
        if not dest.exists() or dest.read_bytes() != data:
            tmp = dest.with_name(f".{dest.name}.tmp")
            tmp.write_bytes(data)
            os.chmod(tmp, mode)
            os.replace(tmp, dest)


def replica_mesh(mesh_file: Path, etcd: str | None) -> str:
    """The replica's mesh.yaml: the first host's, with `--etcd` as its store if given."""
    import io

    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    from gossamer.discovery.stores import parse_store_url

    try:
        text = mesh_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--mesh-file {mesh_file}: cannot read it ({exc})") from None
    yaml = YAML()
    try:
        data: Any = yaml.load(text)
    except YAMLError as exc:
        raise ConfigError(f"--mesh-file {mesh_file}: not YAML ({exc})") from None
    control = data.get("control") if isinstance(data, dict) else None
    if not isinstance(control, dict) or "services" not in data:
        raise ConfigError(
            f"--mesh-file {mesh_file}: not a mesh.yaml with control and services sections",
            hint="copy .gossamer/mesh.yaml from the host injected with --node (the first)",
        )
    if etcd is not None:
        control["store"] = etcd
    if parse_store_url(str(control.get("store", "embedded"))).kind != "etcd":
        raise ConfigError(
            f"--mesh-file {mesh_file}: its control plane's store is not etcd, so a replica "
            "could share nothing with it",
            hint="inject the first host with --etcd HOST:PORT, or give --etcd here",
        )
    control["ca_dir"] = names.CONTAINER_CA_DIR
    control["data_dir"] = names.CONTAINER_DATA_DIR
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


def write_join_bootstrap(
    base: Path, plan: Plan, options: InjectOptions, inputs: JoinInputs
) -> JoinReport:
    """Fill `base/.gossamer/` for a joining host; nothing is created from nothing."""
    folder = base / names.BOOTSTRAP_DIR
    report = JoinReport(directory=folder, tokens_copied=[], tokens_kept=[])
    folder_guard.check_folder(folder)
    if options.control_replica:
        ca_ready = (base / names.CA_DIR / "ca.json").is_file()
        if inputs.intermediate is None and not ca_ready:
            raise UsageError("--control-replica needs --intermediate DIR (the replica's CA)")
        if inputs.mesh_file is None and not (base / names.MESH_FILE).is_file():
            raise UsageError("--control-replica needs --mesh-file F (the first host's mesh.yaml)")
    try:
        folder_guard.make_folder(folder)
        (folder / "tokens").mkdir(mode=0o700, exist_ok=True)
        _copy_tokens(base, plan, options, inputs.token_dir, report)
        if options.control_replica and inputs.intermediate is not None:
            _copy_intermediate(inputs.intermediate, base / names.CA_DIR)
            report.ca_copied = True
        if options.control_replica and inputs.mesh_file is not None:
            atomic_write(base / names.MESH_FILE, replica_mesh(inputs.mesh_file, options.etcd))
            report.mesh_written = True
    except OSError as exc:
        raise GossamerError(
            f"cannot write the bootstrap files in {folder}: {exc.strerror or exc}"
        ) from None
    return report
