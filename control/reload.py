"""Reload mesh.yaml when it changes (cheap polling of its stat) or when asked (SIGHUP).

A file that fails to parse or validate is reported once, with the field and line, and
the last good configuration keeps serving; fixing the file applies it. Identical
content (an editor rewriting the same bytes, a `touch`) is not a change.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

from gossamer.errors import ConfigError
from gossamer.logs import event
from gossamer.yamlconf import Node

from .config import MeshConfig, load_mesh_text

log = logging.getLogger("gossamer.control.config")

Loaded = Callable[[Node, MeshConfig], None]


def _signature(path: Path) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)


class ConfigWatcher:
    def __init__(self, path: Path, on_load: Loaded, *, interval: float = 0.5) -> None:
        self.path = path
        self.on_load = on_load
        self.interval = interval
        self.last_error: ConfigError | None = None
        self.loads = 0
        self._signature: tuple[int, int, int, int] | None = None
        self._digest: str | None = None
        self._failed_digest: str | None = None
        self._trigger = asyncio.Event()

    def load_initial(self) -> None:
        """The first load: any error is fatal (raised), there is nothing to fall back on."""
        self._signature = _signature(self.path)
        text = self._read()
        root, mesh = load_mesh_text(text, source=str(self.path))
        self._digest = hashlib.sha256(text.encode()).hexdigest()
        self.on_load(root, mesh)
        self.loads += 1

    def _read(self) -> str:
        try:
            return self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"file not found: {self.path}", hint="check the path") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read {self.path}: {exc}") from None

    def check(self, *, force: bool = False) -> bool:
        """Reload if the file changed (or `force`); True when a new config was applied."""
        signature = _signature(self.path)
        if not force and signature == self._signature:
            return False
        self._signature = signature
        try:
            text = self._read()
        except ConfigError as exc:
            self._report(exc, None)
            return False
        digest = hashlib.sha256(text.encode()).hexdigest()
        if digest in (self._digest, self._failed_digest):
            return False
        try:
            root, mesh = load_mesh_text(text, source=str(self.path))
            self.on_load(root, mesh)
        except ConfigError as exc:
            self._report(exc, digest)
            return False
        except Exception as exc:  # a bug or a limit we missed: still never stop reloading
            log.exception("unexpected error while loading the configuration")
            self._report(
                ConfigError(
                    f"could not be loaded ({type(exc).__name__}: {exc})",
                    source=str(self.path),
                    hint="the last good configuration keeps serving; see the log",
                ),
                digest,
            )
            return False
        self._digest = digest
        self._failed_digest = None
        self.last_error = None
        self.loads += 1
        event(log, logging.INFO, "configuration reloaded", path=str(self.path), sha256=digest[:12])
        return True

    def _report(self, exc: ConfigError, digest: str | None) -> None:
        self.last_error = exc
        self._failed_digest = digest
        fields = {"error": exc.message, "path": str(self.path)}
        if exc.hint:
            fields["hint"] = exc.hint
        event(
            log, logging.ERROR, "configuration rejected; still serving the last good one", **fields
        )

    def trigger(self) -> None:
        """Reload now (SIGHUP), even if the file's stat looks unchanged."""
        self._trigger.set()

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._trigger.wait(), self.interval)
            forced = self._trigger.is_set()
            self._trigger.clear()
            try:
                self.check(force=forced)
            except Exception:  # e.g. stat or read failing oddly: log, keep watching
                log.exception("configuration watch: check failed; still watching")
