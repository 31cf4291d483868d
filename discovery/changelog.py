"""A bounded in-memory log of registry changes, shared by every watcher of a store.

Theory of operation: the embedded store appends the events of each write, tagged with
the write's revision, to one list. A watcher keeps only a cursor (the last revision it
delivered) and reads `since(cursor)`: a slice of the list found by bisection, so 1,000
watchers cost 1,000 cursors rather than 1,000 queues. When the list grows past
`max_events` its oldest revisions are dropped (whole revisions at a time, never half a
write) and `floor` rises to the newest revision dropped. A watcher whose cursor is below
the floor has missed events that are gone: `since()` returns None and the watcher must
resync from the full state (a RESYNC event) rather than skip silently.

Waking watchers: every append sets an `asyncio.Event` and replaces it, so each waiting
watcher wakes once per append with no per-watcher bookkeeping.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_right
from collections.abc import Sequence

from gossamer.discovery.model import Event

DEFAULT_MAX_EVENTS = 10_000


class ChangeLog:
    """Events in revision order; everything after `floor` is still here."""

    def __init__(self, max_events: int = DEFAULT_MAX_EVENTS, *, start_revision: int = 0) -> None:
        if max_events < 1:
            raise ValueError("max_events must be at least 1")
        self.max_events = max_events
        # trim in chunks so appending stays O(1) amortised
        self._slack = max(1, max_events // 8)
        self._events: list[Event] = []
        self._revisions: list[int] = []
        self._floor = start_revision
        self._head = start_revision
        self._wakeup = asyncio.Event()
        self._closed = False

    @property
    def floor(self) -> int:
        """Every event with a revision above this one is in the log."""
        return self._floor

    @property
    def head(self) -> int:
        """The newest revision appended (or the start revision)."""
        return self._head

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._events)

    def append(self, revision: int, events: Sequence[Event]) -> None:
        """Record the events of one write and wake the watchers."""
        if revision <= self._head:
            raise ValueError(f"revision {revision} is not after {self._head}")
        for event in events:
            self._events.append(event)
            self._revisions.append(revision)
        self._head = revision
        if len(self._events) > self.max_events + self._slack:
            self._trim()
        self._notify()

    def _trim(self) -> None:
        cut = len(self._events) - self.max_events
        last_dropped = self._revisions[cut - 1]
        # never keep half of a write: drop the rest of that revision too
        while cut < len(self._revisions) and self._revisions[cut] == last_dropped:
            cut += 1
        del self._events[:cut]
        del self._revisions[:cut]
        self._floor = last_dropped

    def since(self, revision: int) -> list[Event] | None:
        """The events after `revision`, in order; None if some of them were dropped."""
        if revision < self._floor:
            return None
        start = bisect_right(self._revisions, revision)
        return self._events[start:]

    async def wait_beyond(self, revision: int) -> None:
        """Return once something after `revision` was appended, or the log closed."""
        while self._head <= revision and not self._closed:
            await self._wakeup.wait()

    def close(self) -> None:
        self._closed = True
        self._notify()

    def _notify(self) -> None:
        self._wakeup.set()
        self._wakeup = asyncio.Event()
