"""The sidecar's state directory (`--state-dir`): what lets it restart without a control plane.

    state = StateDir.open(Path("/var/lib/gossamer"))   # created 0700; refuses unsafe ones
    identity = state.load_identity(service, namespace, instance_id)   # None: start afresh
    state.save_identity(StoredIdentity(...))
    saved = state.load_xds(service, namespace, instance_id)            # accepted resources
    state.save_xds(service, namespace, instance_id, xds_client.export())

Theory of operation (docs/architecture.md, "Identity"; issue 18, item 4, static stability):

- Two files, each replaced atomically (gossamer/fsutil.py: temporary file, fsync,
  rename), mode 0600 in a 0700 directory: `identity.json` (the certificate chain, its
  private key, the trust bundle and CRLs, when the leaf arrived) and `xds.json` (the
  last accepted xDS resources of every type with their versions, written only after
  they were ACKed and only when they make a complete configuration). The key and its
  chain are one file, so a crash can never leave a new chain beside an old key.
- The directory must be the sidecar user's own, not a symbolic link, and closed to
  group and others (0700); a missing one is created so. Anything else is refused with
  a `StateError` saying what to fix: these files hold the workload's private key.
- On start, a stored identity is used only if it is for the same service, namespace
  and instance id, its key matches its leaf, the leaf carries the stored SPIFFE ID and
  has at least `MIN_LEFT` seconds to live. Otherwise it is ignored with a log line
  (the reason) and the sidecar bootstraps with its join token as without state.
- Resources are stored as the serialized `Any` messages the control plane sent
  (base64), so a restart replays them through the same decoders as a live response.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import logging
import os
import stat
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gossamer.certs.spiffe import spiffe_ids_of
from gossamer.errors import GossamerError
from gossamer.fsutil import atomic_write
from gossamer.logs import event

log = logging.getLogger("gossamer.proxy.agent.state")

FORMAT = 1
IDENTITY_FILE = "identity.json"
XDS_FILE = "xds.json"
MIN_LEFT = 10.0  # seconds a stored leaf must still live to be used


class StateError(GossamerError):
    """The state directory cannot be used safely."""


@dataclass(frozen=True)
class StoredIdentity:
    """A sidecar's certificate, key and trust, as kept in `identity.json`."""

    service: str
    namespace: str
    instance_id: str
    spiffe_id: str
    chain_pem: str
    key_pem: str
    bundle_pem: str
    crl_pem: str
    received: float  # Unix time the leaf arrived (its renewal counts from there)

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, **asdict(self)}, indent=1) + "\n"

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> StoredIdentity:
        if raw.get("format") != FORMAT:
            raise ValueError(f"unknown format {raw.get('format')!r}")
        fields = {k: raw[k] for k in cls.__dataclass_fields__}
        received = fields["received"]
        if isinstance(received, bool) or not isinstance(received, int | float):
            raise ValueError("received is not a number")
        fields["received"] = float(received)
        for key, value in fields.items():
            if key != "received" and not isinstance(value, str):
                raise ValueError(f"{key} is not a string")
        return cls(**fields)


def check_identity(
    stored: StoredIdentity, service: str, namespace: str, instance_id: str, now: dt.datetime
) -> str | None:
    """Why `stored` cannot be used by this sidecar now (None: it can)."""
    if (stored.service, stored.namespace) != (service, namespace):
        return f"it is for {stored.service}.{stored.namespace}, not {service}.{namespace}"
    if stored.instance_id != instance_id:
        return f"it is for instance {stored.instance_id!r}, not {instance_id!r}"
    try:
        leaf = x509.load_pem_x509_certificate(stored.chain_pem.encode())
        key = serialization.load_pem_private_key(stored.key_pem.encode(), password=None)
    except ValueError as exc:
        return f"unreadable certificate or key ({exc})"
    if key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        return "the key does not match the certificate"
    if spiffe_ids_of(leaf) != [stored.spiffe_id]:
        return f"the certificate does not carry {stored.spiffe_id}"
    left = (leaf.not_valid_after_utc - now).total_seconds()
    if left < MIN_LEFT:
        return f"the certificate expired at {leaf.not_valid_after_utc.isoformat()}"
    return None


def encode_resources(resources: list[Any]) -> list[str]:
    """`Any` messages -> base64 strings (their wire form)."""
    return [base64.b64encode(r.SerializeToString()).decode("ascii") for r in resources]


def decode_resources(encoded: list[str]) -> list[bytes]:
    """base64 strings -> the wire form of each `Any` (a ValueError if malformed)."""
    try:
        return [base64.b64decode(e.encode("ascii"), validate=True) for e in encoded]
    except (binascii.Error, AttributeError, UnicodeEncodeError) as exc:
        raise ValueError(f"malformed resource: {exc}") from None


class StateDir:
    """A checked state directory (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def open(cls, path: Path) -> StateDir:
        """Create `path` (0700) if missing; refuse a link, another user's or an open one."""
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                os.mkdir(path, 0o700)
            except OSError as exc:
                raise StateError(
                    f"cannot create the state directory {path}: {exc.strerror or exc}",
                    hint="choose another --state-dir, or create it (mode 0700) first",
                ) from None
            info = os.lstat(path)
        except OSError as exc:
            raise StateError(f"cannot read the state directory {path}: {exc.strerror}") from None
        if stat.S_ISLNK(info.st_mode):
            raise StateError(
                f"the state directory {path} is a symbolic link (to {os.readlink(path)})",
                hint="give --state-dir the real directory: it holds the private key",
            )
        if not stat.S_ISDIR(info.st_mode):
            raise StateError(f"the state directory {path} is not a directory")
        if info.st_uid != os.geteuid():
            raise StateError(
                f"the state directory {path} belongs to uid {info.st_uid}, "
                f"not to this sidecar's user (uid {os.geteuid()})",
                hint=f"chown {os.geteuid()} {path}, or choose another --state-dir",
            )
        if info.st_mode & 0o077:
            raise StateError(
                f"the state directory {path} is open to other users "
                f"(mode {stat.S_IMODE(info.st_mode):04o})",
                hint=f"chmod 700 {path}: it holds the sidecar's private key",
            )
        return cls(path)

    def _read(self, name: str) -> dict[str, Any] | None:
        file = self.path / name
        try:
            raw = json.loads(file.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            event(log, logging.WARNING, "state file unreadable; ignored", file=str(file),
                  error=str(exc))  # fmt: skip
            return None
        return raw if isinstance(raw, dict) else None

    def load_identity(
        self, service: str, namespace: str, instance_id: str, now: dt.datetime | None = None
    ) -> StoredIdentity | None:
        """The stored identity if this sidecar can use it now, else None (logged)."""
        raw = self._read(IDENTITY_FILE)
        if raw is None:
            return None
        try:
            stored = StoredIdentity.from_json(raw)
        except (KeyError, ValueError) as exc:
            reason: str | None = f"malformed ({exc})"
        else:
            reason = check_identity(
                stored, service, namespace, instance_id, now or dt.datetime.now(dt.UTC)
            )
        if reason is not None:
            event(log, logging.WARNING, "stored identity ignored; starting with the join token",
                  state_dir=str(self.path), reason=reason)  # fmt: skip
            return None
        return stored

    def save_identity(self, identity: StoredIdentity) -> None:
        atomic_write(self.path / IDENTITY_FILE, identity.to_json(), mode=0o600)

    def load_xds(self, service: str, namespace: str, instance_id: str) -> dict[str, Any] | None:
        """The stored accepted resources (`XdsClient.export()` form) for this sidecar."""
        raw = self._read(XDS_FILE)
        if raw is None:
            return None
        owner = (raw.get("service"), raw.get("namespace"), raw.get("instance_id"))
        if raw.get("format") != FORMAT or owner != (service, namespace, instance_id):
            event(log, logging.WARNING, "stored configuration ignored (another sidecar's)",
                  state_dir=str(self.path))  # fmt: skip
            return None
        types = raw.get("types")
        return types if isinstance(types, dict) else None

    def save_xds(
        self, service: str, namespace: str, instance_id: str, types: dict[str, Any]
    ) -> None:
        doc = {
            "format": FORMAT,
            "service": service,
            "namespace": namespace,
            "instance_id": instance_id,
            "types": types,
        }
        atomic_write(self.path / XDS_FILE, json.dumps(doc) + "\n", mode=0o600)
