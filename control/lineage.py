"""Leaf lineage: which join token each leaf the control plane issued descends from.

A bootstrap (`Certify` with a join token) records the new leaf's serial under the
token's id; a renewal (`Certify` with the caller's current leaf) records the new serial
under the token of the leaf it renews, so a sidecar's whole line of certificates, however
often renewed, traces back to the token that admitted it. Revoking the token
(`DELETE /v1/tokens/{id}`, `gossamer token revoke ID`) then revokes every unexpired leaf
of that line (control/revocation_api.py).

`<data_dir>/leaf-lineage.jsonl` (mode 0600) is an append-only log, one JSON object per
issued leaf: serial (hex), token id, SPIFFE ID and expiry. Issuing a leaf appends one
line (under a lock, so replicas sharing the directory interleave whole lines), so the
cost of a bootstrap does not grow with the mesh: rewriting a whole file per leaf cost
18 ms a leaf at 3,000 sidecars, 54 s of the control plane's time for 3,000 bootstraps.
Reads come from an index in memory that follows the file (new lines are read as they
appear; a file replaced by a compaction is read anew). When expired lines outnumber
live ones (and there are more than `COMPACT_AFTER`), the log is rewritten with the live
leaves only, atomically; so it holds about one line per live sidecar plus its recent
renewals. A torn last line (a crash mid-write) is skipped. Lines are not fsynced one
by one (0.1 ms a leaf instead of milliseconds): a crashed process loses none, a crashed
machine may lose the last seconds' lines, whose leaves `token revoke` would then miss
(`certs revoke SERIAL` still reaches them). A leaf issued before this
existed, or by `gossamer certs issue`, has no lineage.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from gossamer.certs.crl import format_serial
from gossamer.fsutil import atomic_write, locked
from gossamer.logs import event

log = logging.getLogger("gossamer.control.lineage")

LINEAGE_FILE = "leaf-lineage.jsonl"
COMPACT_AFTER = 1000  # lines in the log before expired ones are worth rewriting away


@dataclass(frozen=True)
class Leaf:
    serial: str  # hex
    token_id: str  # "" when the line's origin is unknown
    spiffe_id: str
    not_after: float

    @property
    def serial_number(self) -> int:
        return int(self.serial, 16)


class LeafLineage:
    def __init__(self, data_dir: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        self.dir = Path(data_dir)
        self.path = self.dir / LINEAGE_FILE
        self._lock = self.dir / ".leaf-lineage.lock"
        self._clock = clock
        self._leaves: dict[str, Leaf] = {}
        self._lines = 0  # lines in the log as read so far (live or not)
        self._inode: int | None = None
        self._offset = 0

    # -- reading: an index in memory that follows the log --------------------------------
    def _refresh(self) -> dict[str, Leaf]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._leaves, self._lines, self._inode, self._offset = {}, 0, None, 0
            return self._leaves
        except OSError as exc:
            self._report(exc)
            return self._leaves
        if st.st_ino != self._inode or st.st_size < self._offset:  # new or compacted
            self._leaves, self._lines, self._inode, self._offset = {}, 0, st.st_ino, 0
        if st.st_size > self._offset:
            try:
                with self.path.open("rb") as f:
                    f.seek(self._offset)
                    chunk = f.read(st.st_size - self._offset)
            except OSError as exc:
                self._report(exc)
                return self._leaves
            complete = chunk.rfind(b"\n") + 1  # a line still being written waits
            self._offset += complete
            for line in chunk[:complete].splitlines():
                self._take(line)
        return self._leaves

    def _take(self, line: bytes) -> None:
        try:
            raw = json.loads(line)
            leaf = Leaf(str(raw["serial"]), str(raw["token_id"]), str(raw["spiffe_id"]),
                        float(raw["not_after"]))  # fmt: skip
        except (ValueError, TypeError, KeyError) as exc:
            event(log, logging.WARNING, "skipped an unreadable leaf lineage line",
                  file=str(self.path), error=str(exc))  # fmt: skip
            return
        self._lines += 1
        self._leaves[leaf.serial] = leaf

    def _report(self, exc: OSError) -> None:
        event(log, logging.ERROR, "cannot read the leaf lineage", file=str(self.path),
              error=str(exc))  # fmt: skip

    # -- writing --------------------------------------------------------------------------
    def record(self, serial: int, token_id: str, spiffe_id: str, not_after: float) -> Leaf:
        """Remember a newly issued leaf (one line appended; expired ones compacted away)."""
        leaf = Leaf(format_serial(serial), token_id, spiffe_id, not_after)
        line = json.dumps(asdict(leaf), separators=(",", ":")) + "\n"
        self.dir.mkdir(parents=True, exist_ok=True)
        with locked(self._lock):
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            try:
                size = os.fstat(fd).st_size
                torn = size > 0 and os.pread(fd, 1, size - 1) != b"\n"  # a crash mid-line
                os.write(fd, (b"\n" if torn else b"") + line.encode())
            finally:
                os.close(fd)
            leaves = self._refresh()
            if self._lines > COMPACT_AFTER and self._lines > 2 * self._live(leaves):
                self._compact(leaves)
        return leaf

    def _live(self, leaves: dict[str, Leaf]) -> int:
        now = self._clock()
        return sum(1 for v in leaves.values() if v.not_after > now)

    def _compact(self, leaves: dict[str, Leaf]) -> None:
        now = self._clock()
        live = [v for v in leaves.values() if v.not_after > now]
        body = "".join(json.dumps(asdict(v), separators=(",", ":")) + "\n" for v in live)
        atomic_write(self.path, body, mode=0o600)
        self._inode = None  # read the new file from its start next time
        self._refresh()

    # -- queries --------------------------------------------------------------------------
    def get(self, serial: int) -> Leaf | None:
        """The unexpired leaf `serial`, if this control plane issued it."""
        leaf = self._refresh().get(format_serial(serial))
        return leaf if leaf is not None and leaf.not_after > self._clock() else None

    def token_of(self, serial: int) -> str:
        """The join token `serial`'s line descends from ("" when unknown)."""
        leaf = self.get(serial)
        return leaf.token_id if leaf is not None else ""

    def leaves_of(self, token_id: str) -> list[Leaf]:
        """Every unexpired leaf descending from `token_id`."""
        now = self._clock()
        return sorted(
            (v for v in self._refresh().values() if v.token_id == token_id and v.not_after > now),
            key=lambda v: v.not_after,
        )
