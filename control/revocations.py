"""The revocation list: leaf serials the mesh no longer accepts, kept in the data directory.

`<data_dir>/revocations.json` (mode 0600, written atomically like
`join-token-uses.json`) holds one entry per revoked leaf: its serial (hex), why, when,
who revoked it, and when the leaf expires. The control plane turns the list into CRLs
pushed with the trust bundle (control/crls.py) and refuses revoked callers itself
(control/security.py); the list survives restarts.

An entry is dropped once its leaf has expired: an expired leaf fails verification
anyway, so the CRL stays as small as the set of live revoked leaves. A leaf whose
expiry the control plane does not know (not issued by it as far as its lineage records
go, and revoked by serial without its certificate) is kept for the longest lifetime any
leaf of the mesh CA can have, `UNKNOWN_LIFETIME` (720 h: the upper bound of
`control.max_cert_ttl`, and the cap of `gossamer certs issue --ttl`). At most
`MAX_REVOCATIONS` live entries are kept: beyond that `revoke()` refuses (ConfigError,
a 400 from the API).

`stamp()` changes whenever the file does (this process or another sharing the data
directory), so the CRLs are rebuilt at most about a second after any change.

A file that cannot be read or parsed (a hand edit, a disk error):

- at control-plane start, `check()` makes it a start-up error naming the file (an empty
  list would un-revoke every leaf and sign empty CRLs);
- while running, the last list read stays in force (refusing every caller would stop
  the mesh, forgetting would un-revoke), the failure is logged once per change of the
  file (the failing stamp is cached, so the per-RPC checks do not re-parse it), and
  `revoke()` and `prune()` refuse to write over it (`RevocationsUnavailable`, a 503 from
  the API) until it is repaired or removed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from gossamer.certs.crl import format_serial
from gossamer.errors import ConfigError, GossamerError
from gossamer.fsutil import atomic_write, locked
from gossamer.logs import event
from gossamer.meshconfig.schema import MAX_TTL_CAP

log = logging.getLogger("gossamer.control.revocations")

Stamp = tuple[int, int]

REVOCATIONS_FILE = "revocations.json"
MAX_REASON = 200  # characters of a reason kept
MAX_REVOCATIONS = 100_000  # live entries (revoked leaves not yet expired)
# how long an entry of a leaf whose expiry is unknown is kept: the longest lifetime any
# leaf can have (control.max_cert_ttl's upper bound, `gossamer certs issue --ttl`'s cap)
UNKNOWN_LIFETIME = float(MAX_TTL_CAP)
# The cancel message of a long-lived call ended because its caller's leaf was revoked
# (control/security.py `cut_revoked`): the handler answers PERMISSION_DENIED.
CUT_MESSAGE = "the caller's certificate has been revoked"


def cut_for_revocation(exc: BaseException) -> bool:
    """True if `exc` is the cancellation `cut_revoked` delivers."""
    return isinstance(exc, asyncio.CancelledError) and CUT_MESSAGE in exc.args


class RevocationsUnavailable(GossamerError):
    """The revocation file cannot be read: nothing is written over it."""


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


# what `add` takes: (serial, the leaf's expiry, SPIFFE ID, token id) per leaf; and gives:
# each entry and whether it is new
Serials = list[tuple[int, float, str, str]]
Added = list[tuple[Revocation, bool]]


class RevocationReader(Protocol):
    """What the control plane reads of a revocation list, wherever it is kept (this
    file, or etcd shared by replicas: control/etcd_security.py)."""

    def stamp(self) -> object: ...
    def list(self, at: float | None = None) -> list[Revocation]: ...
    def is_revoked(self, serial: int) -> bool: ...
    def prune(self, before: float | None = None) -> int: ...
    async def add(self, serials: Serials, *, reason: str, by: str) -> Added: ...


class RevocationStore:
    """The revoked leaves of `<data_dir>/revocations.json`; safe across processes."""

    def __init__(self, data_dir: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        self.dir = Path(data_dir)
        self.path = self.dir / REVOCATIONS_FILE
        self._lock = self.dir / ".revocations.lock"
        self._clock = clock
        self._cache: tuple[Stamp | None, dict[str, Revocation]] = (None, {})
        self._failed: tuple[Stamp, str] | None = None  # the failing file's stamp, why

    def stamp(self) -> Stamp | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        except OSError as exc:  # e.g. the directory became unreadable: a failing stamp
            return (-1, exc.errno or 0)
        return (st.st_ino, st.st_mtime_ns)

    def _parse(self) -> dict[str, Revocation]:
        raw = json.loads(self.path.read_text())
        entries = {}
        for e in raw.get("revoked", []):
            entry = Revocation(**e)
            entries[entry.serial] = entry
        return entries

    def _read(self) -> dict[str, Revocation]:
        stamp = self.stamp()
        if stamp is None:
            self._failed = None
            return {}
        if self._cache[0] == stamp:
            return self._cache[1]
        if self._failed is not None and self._failed[0] == stamp:
            return self._cache[1]  # known bad: neither parsed nor logged again
        try:
            entries = self._parse()
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            # written atomically, so only a hand edit or a disk error gets here: keep what
            # was read last (refusing every caller would stop the mesh, forgetting would
            # un-revoke), once per change of the file
            self._failed = (stamp, _why(exc))
            event(log, logging.ERROR, "cannot read the revocation list; keeping the last one "
                  "read, and refusing new revocations until it is repaired",
                  file=str(self.path), error=_why(exc), revoked=len(self._cache[1]))  # fmt: skip
            return self._cache[1]
        self._failed = None
        self._cache = (stamp, entries)
        return entries

    def check(self) -> None:
        """At start: a ConfigError if the file exists but cannot be read or parsed."""
        if self.stamp() is None:
            return
        try:
            entries = self._parse()
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ConfigError(
                f"cannot read the revocation list {self.path}: {_why(exc)}",
                hint='repair the file (JSON: {"revoked": [...]}) or restore it from a '
                "backup; removing it un-revokes every revoked certificate",
            ) from None
        self._cache = (self.stamp(), entries)
        self._failed = None

    def _writable(self) -> dict[str, Revocation]:
        """The current entries, to change and write back; RevocationsUnavailable while
        the file cannot be read (its content would be lost). Called under the lock."""
        entries = self._read()
        if self._failed is not None:
            raise RevocationsUnavailable(
                f"the revocation list {self.path} cannot be read ({self._failed[1]}); "
                "nothing is revoked until it is repaired",
                hint="the control plane's log has the error; the revocations read "
                "before it broke are still enforced",
            )
        return dict(entries)

    def _write(self, entries: dict[str, Revocation]) -> None:
        body = {"revoked": [asdict(e) for e in sorted(entries.values(), key=_order)]}
        atomic_write(self.path, json.dumps(body, indent=2) + "\n", mode=0o600)
        self._cache, self._failed = (self.stamp(), dict(entries)), None  # the last good list

    def revoke(
        self,
        serials: list[tuple[int, float, str, str]],
        *,
        reason: str,
        by: str,
    ) -> list[tuple[Revocation, bool]]:
        """Revoke each (serial, not_after, spiffe_id, token_id); returns each entry and
        whether it is new (an already revoked serial keeps its first entry). ConfigError
        beyond `MAX_REVOCATIONS` live entries (nothing revoked), RevocationsUnavailable
        while the file cannot be read."""
        now = self._clock()
        self.dir.mkdir(parents=True, exist_ok=True)
        out: list[tuple[Revocation, bool]] = []
        with locked(self._lock):
            entries = self._live(self._writable(), now)
            adding = {format_serial(s[0]) for s in serials} - entries.keys()
            if len(entries) + len(adding) > MAX_REVOCATIONS:
                raise ConfigError(
                    f"the revocation list holds {len(entries)} revoked certificates not yet "
                    f"expired; {len(adding)} more would pass its limit of {MAX_REVOCATIONS:,}",
                    field="serial",
                    hint="entries go when their certificates expire; revoke a join token "
                    "or rotate the root (gossamer certs rotate-root) to cut off many leaves",
                )
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

    async def add(self, serials: Serials, *, reason: str, by: str) -> Added:
        """`revoke`, for callers of any RevocationReader."""
        return self.revoke(serials, reason=reason, by=by)

    def _live(self, entries: dict[str, Revocation], now: float) -> dict[str, Revocation]:
        return {k: e for k, e in entries.items() if e.not_after > now}

    def prune(self, before: float | None = None) -> int:
        """Drop the entries of leaves expired by `before` (now); returns how many went."""
        when = self._clock() if before is None else before
        if not self.path.exists():
            return 0
        with locked(self._lock):
            entries = self._writable()
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


def _why(exc: Exception) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    if isinstance(exc, KeyError):
        return f"no {exc} key"
    return str(exc) or type(exc).__name__


def _order(entry: Revocation) -> tuple[float, str]:
    return (entry.revoked_at, entry.serial)
