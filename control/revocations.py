"""The revocation list: leaf serials the mesh no longer accepts, kept in the data directory.

`<data_dir>/revocations.json` (mode 0600, written atomically like
`join-token-uses.json`) holds one entry per revoked leaf: its serial (hex), why, when,
who revoked it, and when the leaf expires. The control plane turns the list into CRLs
pushed with the trust bundle (control/crls.py) and refuses revoked callers itself
(control/security.py); the list survives restarts.

An entry is dropped once its leaf has expired: an expired leaf fails verification
anyway, so the CRL stays as small as the set of live revoked leaves. A leaf whose
expiry the control plane does not know (not issued by it as far as its lineage records
go) is kept for the longest leaf lifetime, `control.max_cert_ttl`, which no leaf
outlives.

`stamp()` changes whenever the file does (this process or another sharing the data
directory), so the CRLs are rebuilt at most about a second after any change.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gossamer.certs.crl import format_serial
from gossamer.fsutil import atomic_write, locked
from gossamer.logs import event

log = logging.getLogger("gossamer.control.revocations")

REVOCATIONS_FILE = "revocations.json"
MAX_REASON = 200  # characters of a reason kept
# The cancel message of a long-lived call ended because its caller's leaf was revoked
# (control/security.py `cut_revoked`): the handler answers PERMISSION_DENIED.
CUT_MESSAGE = "the caller's certificate has been revoked"


def cut_for_revocation(exc: BaseException) -> bool:
    """True if `exc` is the cancellation `cut_revoked` delivers."""
    return isinstance(exc, asyncio.CancelledError) and CUT_MESSAGE in exc.args


@dataclass(frozen=True)
class Revocation:
    serial: str  # hex, lower case, no leading zeros
    reason: str
    revoked_at: float
    by: str
    not_after: float  # when the leaf expires (the entry is dropped after it)
    spiffe_id: str = ""  # when known (from the lineage)
    token_id: str = ""  # the join token the leaf descends from, when known

    @property
    def serial_number(self) -> int:
        return int(self.serial, 16)

    def public(self) -> dict[str, Any]:
        return asdict(self)


class RevocationStore:
    """The revoked leaves of `<data_dir>/revocations.json`; safe across processes."""

    def __init__(self, data_dir: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        self.dir = Path(data_dir)
        self.path = self.dir / REVOCATIONS_FILE
        self._lock = self.dir / ".revocations.lock"
        self._clock = clock
        self._cache: tuple[tuple[int, int] | None, dict[str, Revocation]] = (None, {})

    def stamp(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns)

    def _read(self) -> dict[str, Revocation]:
        stamp = self.stamp()
        if stamp is None:
            return {}
        if self._cache[0] == stamp:
            return self._cache[1]
        try:
            raw = json.loads(self.path.read_text())
            entries = {e["serial"]: Revocation(**e) for e in raw.get("revoked", [])}
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            # written atomically, so only a hand edit gets here: keep what was read last
            # (refusing every caller would stop the mesh, forgetting would un-revoke)
            event(log, logging.ERROR, "cannot read the revocation list; keeping the last one read",
                  file=str(self.path), error=str(exc))  # fmt: skip
            return self._cache[1]
        self._cache = (stamp, entries)
        return entries

    def _write(self, entries: dict[str, Revocation]) -> None:
        body = {"revoked": [asdict(e) for e in sorted(entries.values(), key=_order)]}
        atomic_write(self.path, json.dumps(body, indent=2) + "\n", mode=0o600)

    def revoke(
        self,
        serials: list[tuple[int, float, str, str]],
        *,
        reason: str,
        by: str,
    ) -> list[tuple[Revocation, bool]]:
        """Revoke each (serial, not_after, spiffe_id, token_id); returns each entry and
        whether it is new (an already revoked serial keeps its first entry)."""
        now = self._clock()
        self.dir.mkdir(parents=True, exist_ok=True)
        out: list[tuple[Revocation, bool]] = []
        with locked(self._lock):
            entries = self._live(dict(self._read()), now)
            for serial, not_after, spiffe_id, token_id in serials:
                key = format_serial(serial)
                known = entries.get(key)
                if known is not None:
                    out.append((known, False))
                    continue
                entry = Revocation(
                    key, reason[:MAX_REASON], now, by, not_after, spiffe_id, token_id
                )
                entries[key] = entry
                out.append((entry, True))
            if any(new for _, new in out):
                self._write(entries)
        return out

    def _live(self, entries: dict[str, Revocation], now: float) -> dict[str, Revocation]:
        return {k: e for k, e in entries.items() if e.not_after > now}

    def prune(self, before: float | None = None) -> int:
        """Drop the entries of leaves expired by `before` (now); returns how many went."""
        when = self._clock() if before is None else before
        if not self.path.exists():
            return 0
        with locked(self._lock):
            entries = dict(self._read())
            live = self._live(entries, when)
            if len(live) != len(entries):
                self._write(live)
            return len(entries) - len(live)

    def list(self, at: float | None = None) -> list[Revocation]:
        """The entries of leaves not expired at `at` (now), oldest revocation first."""
        when = self._clock() if at is None else at
        return sorted(self._live(self._read(), when).values(), key=_order)

    def is_revoked(self, serial: int) -> bool:
        entry = self._read().get(format_serial(serial))
        return entry is not None and entry.not_after > self._clock()


def _order(entry: Revocation) -> tuple[float, str]:
    return (entry.revoked_at, entry.serial)
