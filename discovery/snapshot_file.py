"""The embedded store's file: crash-safe writes and a strict reader.

Theory of operation: a snapshot is written to a new temporary file in the same
directory, flushed and fsync'ed, then renamed over the old file (`os.replace`, atomic on
POSIX), and the directory is fsync'ed so the rename itself is durable. A crash at any
point leaves either the old complete file or the new complete file, plus at worst a
stray temporary file, which the next start removes. The reader refuses (with the file
name and the reason) anything that is not a complete snapshot, so a damaged or
hand-edited file is reported and never silently replaced.

Format (JSON): `{"format": 1, "revision": N, "services": [...], "endpoints": [...]}`
with `Service.to_dict()` / `Endpoint.to_dict()` entries. Only static state is stored:
lease-owned endpoints belong to live sidecar streams and return when they re-register.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gossamer.discovery.model import Endpoint, Service
from gossamer.errors import ConfigError, GossamerError

FORMAT = 1
TMP_PREFIX = ".registry-"
TMP_SUFFIX = ".tmp"


@dataclass(frozen=True)
class Snapshot:
    revision: int
    services: tuple[Service, ...]
    endpoints: tuple[Endpoint, ...]


def encode(revision: int, services: Iterable[Service], endpoints: Iterable[Endpoint]) -> bytes:
    doc = {
        "format": FORMAT,
        "revision": revision,
        "services": [s.to_dict() for s in services],
        "endpoints": [e.to_dict() for e in endpoints],
    }
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def decode(data: bytes, *, source: str) -> Snapshot:
    """Parse a snapshot; anything malformed is a ConfigError naming the file."""
    try:
        doc: Any = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"registry file is not valid JSON: {exc}",
            source=source,
            hint="restore it from a backup or remove it to start with an empty registry",
        ) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ConfigError(
            f"not a registry file of format {FORMAT}",
            source=source,
            hint="restore it from a backup or remove it to start with an empty registry",
        )
    try:
        revision = doc["revision"]
        if isinstance(revision, bool) or not isinstance(revision, int) or revision < 0:
            raise ValueError(f"bad revision {revision!r}")
        services = tuple(Service.from_dict(d) for d in doc["services"])
        endpoints = tuple(Endpoint.from_dict(d) for d in doc["endpoints"])
    except ConfigError as exc:
        raise ConfigError(exc.detail, field=exc.field, source=source) from None
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"registry file is damaged: {exc!r}", source=source) from None
    return Snapshot(revision, services, endpoints)


def read(path: Path) -> Snapshot | None:
    """The snapshot in `path`, or None if there is no file yet."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise GossamerError(f"cannot read the registry file {path}: {exc}") from None
    return decode(data, source=str(path))


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that a crash leaves the old or the new file."""
    directory = path.parent
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=TMP_SUFFIX, dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def remove_stale_temporaries(directory: Path) -> int:
    """Delete temporary files left by a crash mid-write; returns how many."""
    removed = 0
    for stray in directory.glob(f"{TMP_PREFIX}*{TMP_SUFFIX}"):
        try:
            stray.unlink()
            removed += 1
        except OSError:
            pass
    return removed
