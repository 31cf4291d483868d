"""The state directory of one `gossamer up` run (default `.gossamer/up/`), fresh each run.

    .gossamer-up        marker: this folder belongs to `gossamer up` (safe to wipe)
    mesh.yaml           the control plane's configuration (demo_mesh_yaml.py)
    ca/                 a new mesh CA (root + intermediate)
    data/               the control plane's data: embedded registry, admin-token, audit
    tokens/S.token      one join token per service (mode 0600; `gossamer up` hands each to
                        its sidecars in $GOSSAMER_TOKEN, so a sidecar running as another
                        user needs no access to this folder), admitting exactly that
                        service's instances (`token_uses`); a sidecar that restarts
                        presents it again under the same instance id
    logs/NAME.log       one log per process
    status.json         written once the mesh is up: addresses, pids, URLs (for tools)

With `--nodes` the CA under ca/ is the mesh's root, which no process uses (as a root
kept offline); every node's replica has its own directory:

    nodes/node-K/mesh.yaml   its configuration (etcd store, its addresses)
    nodes/node-K/ca/         its own intermediate (`gossamer certs intermediate`), no
                             root key, and a copy of ca/tokens.json (hashes only; the
                             tokens' uses are counted in etcd, shared by the replicas)
    nodes/node-K/data/       its data (its own admin-token)
    nodes/node-K/etcd/       its etcd member's data (nodes 1..3)
    tokens/gateway.token     the node gateways' join token (gateway, gossamer-system)

A folder without the marker is never wiped (the user may have pointed `--state-dir` at
something else); a folder whose status.json names a live `gossamer up` is in use.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gossamer.contract.identity import CONTROL_NAMESPACE, GATEWAY_SERVICE
from gossamer.errors import GossamerError, UsageError
from gossamer.fsutil import atomic_write
from gossamer.up.demo_mesh_yaml import CA_DIR, DATA_DIR, mesh_yaml
from gossamer.up.layout import NAMESPACE, SERVICES, TRUST_DOMAIN, Layout

MARKER = ".gossamer-up"
DEFAULT_STATE_DIR = Path(".gossamer/up")
TOKEN_TTL = 7 * 86400.0


@dataclass(frozen=True)
class StateDir:
    root: Path
    primary: str | None = None  # --nodes: the node whose replica the summary asks

    def node_dir(self, node: str) -> Path:
        return self.root / "nodes" / node

    @property
    def mesh_file(self) -> Path:
        if self.primary is not None:
            return self.node_dir(self.primary) / "mesh.yaml"
        return self.root / "mesh.yaml"

    @property
    def ca_dir(self) -> Path:
        return self.root / CA_DIR

    @property
    def data_dir(self) -> Path:
        if self.primary is not None:
            return self.node_dir(self.primary) / DATA_DIR
        return self.root / DATA_DIR

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def status_file(self) -> Path:
        return self.root / "status.json"

    @property
    def admin_token_file(self) -> Path:
        return self.data_dir / "admin-token"

    def sidecar_state(self, instance: str) -> Path:
        """An instance's sidecar state directory (`gossamer proxy --state-dir`): its
        certificate, key and last configuration, so a sidecar restarted during the
        session serves at once; the sidecar creates it (0700)."""
        return self.root / "sidecars" / instance

    def token_file(self, service: str) -> Path:
        return self.root / "tokens" / f"{service}.token"

    def token(self, service: str) -> str:
        return self.token_file(service).read_text(encoding="utf-8").strip()

    def admin_token(self) -> str:
        return self.admin_token_file.read_text(encoding="utf-8").strip()

    def node_admin_token(self, node: str) -> str:
        """With --nodes: the admin token of `node`'s replica (each makes its own)."""
        path = self.node_dir(node) / DATA_DIR / "admin-token"
        return path.read_text(encoding="utf-8").strip()

    def write_status(self, status: dict[str, Any]) -> None:
        atomic_write(self.status_file, json.dumps(status, indent=2) + "\n", mode=0o600)


def pid_alive(pid: int) -> bool:
    """A process with this pid exists (ours or another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_pid(root: Path) -> int | None:
    """The pid of a live `gossamer up` using `root`, if any."""
    try:
        status = json.loads((root / "status.json").read_text(encoding="utf-8"))
        pid = int(status["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return pid if pid != os.getpid() and pid_alive(pid) else None


def _wipe(root: Path) -> None:
    if not root.exists():
        return
    if not root.is_dir():
        raise UsageError(f"{root} exists and is not a folder", hint="choose another --state-dir")
    pid = running_pid(root)
    if pid is not None:
        raise UsageError(
            f"another gossamer up (pid {pid}) is running with {root}",
            hint="stop it first (Ctrl-C in its terminal), or pass another --state-dir",
        )
    if not (root / MARKER).exists() and any(root.iterdir()):
        raise UsageError(
            f"{root} is not empty and was not made by gossamer up; not wiping it",
            hint="choose another --state-dir (an empty or new folder)",
        )
    shutil.rmtree(root)


def token_uses(layout: Layout) -> dict[str, int]:
    """How many sidecar instances each service's join token admits: its instances
    (and with --nodes the gateways' token: one per node)."""
    uses = {service: len(layout.of_service(service)) for service in SERVICES}
    if layout.nodes:
        uses[GATEWAY_SERVICE] = len(layout.nodes)
    return uses


def token_summary(layout: Layout) -> str:
    """One line saying what the join tokens allow (printed at start)."""
    uses = ", ".join(f"{service} {n}" for service, n in token_uses(layout).items())
    days = int(TOKEN_TTL // 86400)
    return f"join tokens: one per service, valid {days} days, admitting its instances ({uses})"


def prepare(root: Path, layout: Layout, *, jaeger_url: str | None = None) -> StateDir:
    """Wipe and recreate `root`: CA, one join token per service, mesh.yaml, logs/."""
    from gossamer.certs.ca import CertificateAuthority
    from gossamer.certs.tokens import TokenStore

    state = StateDir(root.absolute(), layout.nodes[0].name if layout.nodes else None)
    try:
        _wipe(state.root)
        state.root.mkdir(parents=True, mode=0o700)
        os.chmod(state.root, 0o700)
        (state.root / MARKER).write_text("made by gossamer up; wiped at its next start\n")
        state.write_status({"pid": os.getpid(), "ready": False})
        state.logs.mkdir()
        if not layout.nodes:
            atomic_write(state.mesh_file, mesh_yaml(layout, jaeger_url=jaeger_url))
        ca = CertificateAuthority.init(state.ca_dir, TRUST_DOMAIN)
        pin = ca.root_pin()
        store = TokenStore(state.ca_dir)
        tokens = state.root / "tokens"
        tokens.mkdir(mode=0o700)
        (state.root / "sidecars").mkdir(mode=0o700)
        for service, uses in token_uses(layout).items():
            namespace = CONTROL_NAMESPACE if service == GATEWAY_SERVICE else NAMESPACE
            token, _ = store.create(service, pin, namespace=namespace, ttl=TOKEN_TTL, uses=uses)
            path = state.token_file(service)
            atomic_write(path, token + "\n", mode=0o600)
        if layout.nodes:
            _prepare_replicas(state, layout, ca)
    except OSError as exc:
        raise GossamerError(
            f"cannot prepare the state directory {root}: {exc.strerror or exc}",
            hint="check its permissions, or pass another --state-dir",
        ) from None
    return state


def _prepare_replicas(state: StateDir, layout: Layout, root: Any) -> None:
    """Every node's replica: its mesh.yaml, its intermediate, the tokens' hashes."""
    from gossamer.certs.intermediates import issue_local
    from gossamer.certs.tokens import TOKENS_FILE
    from gossamer.up.nodes import etcd_store_url

    store = etcd_store_url(layout)
    for node in layout.nodes:
        folder = state.node_dir(node.name)
        folder.mkdir(parents=True, mode=0o700)
        atomic_write(folder / "mesh.yaml", mesh_yaml(layout, control=node.control, store=store))
        issue_local(root, folder / CA_DIR, node.name)
        shutil.copyfile(state.ca_dir / TOKENS_FILE, folder / CA_DIR / TOKENS_FILE)
        os.chmod(folder / CA_DIR / TOKENS_FILE, 0o600)


def clear_status(state: StateDir) -> None:
    with contextlib.suppress(OSError):
        state.status_file.unlink()
