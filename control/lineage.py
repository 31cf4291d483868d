"""Leaf lineage: which join token and which leaf each leaf the control plane issued
descends from.

A bootstrap (`Certify` with a join token) records the new leaf's serial under the
token's id; a renewal (`Certify` with the caller's current leaf) records the new serial
under the token of the leaf it renews, and that leaf's serial as its parent. So a
sidecar's whole line of certificates, however often renewed, traces back to the token
that admitted it: revoking the token (`DELETE /v1/tokens/{id}`, `gossamer token revoke
ID`) revokes every unexpired leaf of that line; and revoking one serial also revokes
every unexpired leaf renewed from it, directly or through other renewals
(`descendants`; control/revocation_api.py), so a stolen key renewed at once into a
fresh leaf does not outlive the revocation of the one it was stolen with.

`<data_dir>/leaf-lineage.jsonl` (mode 0600) is an append-only log, one JSON object per
issued leaf: serial (hex), token id, SPIFFE ID, expiry and parent serial ("" for a
bootstrap; lines written before parents were recorded have none). Issuing a leaf appends one
line (under a lock, so replicas sharing the directory interleave whole lines), so the
cost of a bootstrap does not grow with the mesh: rewriting a whole file per leaf cost
18 ms a leaf at 3,000 sidecars, 54 s of the control plane's time for 3,000 bootstraps.
Reads come from an index in memory that follows the file (new lines are read as they
appear; a file replaced by a compaction is read anew). When the log holds more
than twice the lines worth keeping (and more than `COMPACT_AFTER`), it is rewritten with
those only, atomically: the live leaves, and the expired leaves they were renewed from,
`KEEP_GENERATIONS` renewals back (so revoking a serial that expired a few renewals ago
still reaches its live descendants; about 5 days with 24 h leaves). It holds about that
many lines per live sidecar plus its recent renewals. A torn last line (a crash mid-write) is skipped. Lines are not fsynced one
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
KEEP_GENERATIONS = 8  # expired ancestors of a live leaf kept by a compaction


@dataclass(frozen=True)
class Leaf:
    serial: str  # hex
    token_id: str  # "" when the line's origin is unknown
    spiffe_id: str
    not_after: float
    parent: str = ""  # hex serial of the leaf it renewed ("" for a bootstrap, or unknown)

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
        self._children: dict[str, set[str]] = {}  # parent serial -> serials renewed from it
        self._lines = 0  # lines in the log as read so far (live or not)
        self._inode: int | None = None
        self._offset = 0
        self._check_at = COMPACT_AFTER  # lines in the log at which compacting is considered

    # -- reading: an index in memory that follows the log --------------------------------
    def _refresh(self) -> dict[str, Leaf]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._reset(None)
            return self._leaves
        except OSError as exc:
            self._report(exc)
            return self._leaves
        if st.st_ino != self._inode or st.st_size < self._offset:  # new or compacted
            self._reset(st.st_ino)
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

    def _reset(self, inode: int | None) -> None:
        self._leaves, self._children, self._lines = {}, {}, 0
        self._inode, self._offset, self._check_at = inode, 0, COMPACT_AFTER

    def _take(self, line: bytes) -> None:
        try:
            raw = json.loads(line)
            leaf = Leaf(str(raw["serial"]), str(raw["token_id"]), str(raw["spiffe_id"]),
                        float(raw["not_after"]), str(raw.get("parent") or ""))  # fmt: skip
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            event(log, logging.WARNING, "skipped an unreadable leaf lineage line",
                  file=str(self.path), error=str(exc))  # fmt: skip
            return
        self._lines += 1
        self._leaves[leaf.serial] = leaf
        if leaf.parent:
            self._children.setdefault(leaf.parent, set()).add(leaf.serial)

    def _report(self, exc: OSError) -> None:
        event(log, logging.ERROR, "cannot read the leaf lineage", file=str(self.path),
              error=str(exc))  # fmt: skip

    # -- writing --------------------------------------------------------------------------
    def record(
        self, serial: int, token_id: str, spiffe_id: str, not_after: float, parent: int = 0
    ) -> Leaf:
        """Remember a newly issued leaf, renewed from `parent` (0: bootstrapped); one line
        appended, expired ones compacted away."""
        leaf = Leaf(
            format_serial(serial), token_id, spiffe_id, not_after,
            format_serial(parent) if parent else "",
        )  # fmt: skip
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
            if self._lines > self._check_at:  # else not worth even counting
                keep = self._worth_keeping(leaves)
                if self._lines > 2 * len(keep):
                    self._compact(keep)
                else:
                    self._check_at = max(COMPACT_AFTER, 2 * len(keep))
        return leaf

    def _worth_keeping(self, leaves: dict[str, Leaf]) -> list[Leaf]:
        """The live leaves and their expired ancestors, `KEEP_GENERATIONS` back."""
        now = self._clock()
        keep: dict[str, Leaf] = {}
        for leaf in leaves.values():
            if leaf.not_after <= now:
                continue
            keep[leaf.serial] = leaf
            parent, depth = leaves.get(leaf.parent), 0
            while parent is not None and depth < KEEP_GENERATIONS and parent.not_after <= now:
                if parent.serial in keep:
                    break
                keep[parent.serial] = parent
                parent, depth = leaves.get(parent.parent), depth + 1
        return list(keep.values())

    def _compact(self, keep: list[Leaf]) -> None:
        body = "".join(json.dumps(asdict(v), separators=(",", ":")) + "\n" for v in keep)
        atomic_write(self.path, body, mode=0o600)
        self._inode = None  # read the new file from its start next time
        self._refresh()

    # -- queries --------------------------------------------------------------------------
    def get(self, serial: int) -> Leaf | None:
        """The unexpired leaf `serial`, if this control plane issued it."""
        leaf = self.find(serial)
        return leaf if leaf is not None and leaf.not_after > self._clock() else None

    def find(self, serial: int) -> Leaf | None:
        """The leaf `serial` as recorded, expired or not (None: no record of it)."""
        return self._refresh().get(format_serial(serial))

    def descendants(self, serial: int) -> list[Leaf]:
        """Every unexpired leaf renewed from `serial`, directly or through other
        renewals (expired ones included on the way), oldest expiry first."""
        leaves = self._refresh()
        now = self._clock()
        start = format_serial(serial)
        seen, todo, out = {start}, [start], []
        while todo:
            for child in self._children.get(todo.pop(), ()):
                if child in seen:
                    continue
                seen.add(child)
                todo.append(child)
                leaf = leaves.get(child)
                if leaf is not None and leaf.not_after > now:
                    out.append(leaf)
        return sorted(out, key=lambda v: (v.not_after, v.serial))

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
