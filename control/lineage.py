"""Leaf lineage: which join token each leaf the control plane issued descends from.

A bootstrap (`Certify` with a join token) records the new leaf's serial under the
token's id; a renewal (`Certify` with the caller's current leaf) records the new serial
under the token of the leaf it renews, so a sidecar's whole line of certificates, however
often renewed, traces back to the token that admitted it. Revoking the token
(`DELETE /v1/tokens/{id}`, `gossamer token revoke ID`) then revokes every unexpired leaf
of that line (control/revocation_api.py).

`<data_dir>/leaf-lineage.json` (mode 0600, atomic writes) holds serial (hex) -> token id,
SPIFFE ID and expiry; an entry is dropped once its leaf has expired, so the file holds
about one entry per live sidecar (two around each renewal). A leaf issued before this
existed, or by `gossamer certs issue`, has no lineage.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from gossamer.certs.crl import format_serial
from gossamer.fsutil import atomic_write, locked
from gossamer.logs import event

log = logging.getLogger("gossamer.control.lineage")

LINEAGE_FILE = "leaf-lineage.json"


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

    def _read(self) -> dict[str, Leaf]:
        try:
            raw = json.loads(self.path.read_text())
            return {e["serial"]: Leaf(**e) for e in raw.get("leaves", [])}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            event(log, logging.ERROR, "cannot read the leaf lineage; starting it afresh",
                  file=str(self.path), error=str(exc))  # fmt: skip
            return {}

    def record(self, serial: int, token_id: str, spiffe_id: str, not_after: float) -> Leaf:
        """Remember a newly issued leaf (and forget expired ones)."""
        now = self._clock()
        leaf = Leaf(format_serial(serial), token_id, spiffe_id, not_after)
        self.dir.mkdir(parents=True, exist_ok=True)
        with locked(self._lock):
            leaves = {k: v for k, v in self._read().items() if v.not_after > now}
            leaves[leaf.serial] = leaf
            body = {"leaves": [asdict(v) for v in leaves.values()]}
            atomic_write(self.path, json.dumps(body, indent=2) + "\n", mode=0o600)
        return leaf

    def get(self, serial: int) -> Leaf | None:
        return self._read().get(format_serial(serial))

    def token_of(self, serial: int) -> str:
        """The join token `serial`'s line descends from ("" when unknown)."""
        leaf = self.get(serial)
        return leaf.token_id if leaf is not None else ""

    def leaves_of(self, token_id: str) -> list[Leaf]:
        """Every unexpired leaf descending from `token_id`."""
        now = self._clock()
        return sorted(
            (v for v in self._read().values() if v.token_id == token_id and v.not_after > now),
            key=lambda v: v.not_after,
        )
