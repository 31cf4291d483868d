"""New traces' ids, drawn in batches: a root's ids and decision for a list pop.

Theory of operation: a request that arrives with no trace context starts a trace. At
the default 1% sampling, 99% of those are not sampled and only need a `traceparent`
with fresh random ids and the sampled flag off, so that the next hops follow the
decision. Drawing two random ids and formatting them per request in Python cost about
5,000 instructions (callgrind), more than the rest of the decision. `RootIds` makes
`BATCH` roots at once with C-level steps: one read of random bytes (`os.urandom`, or a
seeded source in tests), `hexlify`, `struct` to split the hex into ids, one `%` that
formats every value, `struct` again to cut them apart. Each root is decided as
OpenTelemetry's TraceIdRatioBased does: sampled when the low 64 bits of its trace id
fall under the sampler's bound; only a root whose first byte of those bits could be
under it is looked at in Python (found by a `translate` and `find`). A root is either
the formatted `traceparent` value of an unsampled root (bytes) or the trace id of a
sampled one (int), which the span path then uses. Ids are never all zero (W3C): a
batch with one is drawn again. Pure logic, no I/O.
"""

from __future__ import annotations

import struct
from binascii import hexlify
from collections.abc import Callable

BATCH = 64
_TRACE_BYTES, _SPAN_BYTES = 16, 8
_RECORD = _TRACE_BYTES + _SPAN_BYTES  # random bytes per root: trace id, then span id
_LOW = 8  # where the low 64 bits of the (big-endian) trace id start in a record
_HEX_IDS = struct.Struct("32s16s" * BATCH)  # a batch's hex -> (trace, span) hex pairs
_VALUES = b"00-%b-%b-00" * BATCH  # every root's traceparent, concatenated
_VALUE = struct.Struct("55s" * BATCH)  # ... cut into one value each
# in the concatenated values, only an all-zero trace (span) id sits between two dashes
# 33 (17) bytes apart
_ZERO_TRACE = b"-" + b"0" * 32 + b"-"
_ZERO_SPAN = b"-" + b"0" * 16 + b"-"


class RootIds:
    """The ids of new traces, `BATCH` at a time. `pending` is the current batch (pop
    from its end); `draw()` refills it and returns one root."""

    __slots__ = ("_bound", "_candidates", "_randbytes", "pending")

    def __init__(self, randbytes: Callable[[int], bytes], bound: int) -> None:
        """`randbytes(n)`: n random bytes. `bound`: a root whose trace id's low 64 bits
        are under it is sampled."""
        self._randbytes = randbytes
        self._bound = bound
        top = bound >> 56  # the highest first byte a sampled root's low bits can have
        self._candidates = bytes(1 if b <= top else 0 for b in range(256))
        self.pending: list[bytes | int] = []

    def draw(self) -> bytes | int:
        """The next root: an unsampled root's `traceparent` value (bytes, sampled flag
        off), or a sampled root's trace id (int)."""
        while True:
            raw = self._randbytes(_RECORD * BATCH)
            values = _VALUES % _HEX_IDS.unpack(hexlify(raw))
            if values.find(_ZERO_TRACE) < 0 and values.find(_ZERO_SPAN) < 0:
                break
        pending = self.pending
        base = len(pending)  # (0 when called as meant: when `pending` is empty)
        pending += _VALUE.unpack(values)
        # roots that may be sampled: the first byte of their trace id's low 64 bits is
        # at most the bound's (at 1%: one root in 85, about one batch in two has one)
        maybe = raw[_LOW::_RECORD].translate(self._candidates)
        i = maybe.find(1)
        while i >= 0:
            start = i * _RECORD
            if int.from_bytes(raw[start + _LOW : start + _TRACE_BYTES], "big") < self._bound:
                pending[base + i] = int.from_bytes(raw[start : start + _TRACE_BYTES], "big")
            i = maybe.find(1, i + 1)
        return pending.pop()
