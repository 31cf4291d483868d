"""Watching the registry in etcd: one shared feed, a local change log, history replay.

Theory of operation:
- `watch_stream` is one raw etcd watch (the Watch RPC from aetcd's generated stubs)
  over the registry prefix, yielding whole revisions: `(revision, events)`. aetcd's own
  watcher hands events over one at a time and serialises watch creation behind one
  condition variable, which costs O(n^2) wake-ups for n watchers; the raw stream keeps
  each revision's events together, which the change log needs.
- `WatchCache` runs ONE such stream per store (the feed), started by the first watch
  at that watch's revision, and appends each revision to a bounded `ChangeLog`. Every
  watcher reads the log with its own cursor, as in the embedded store, so 1,000
  watchers cost one etcd watch, not 1,000.
- A watcher whose cursor is older than the log (it asked for old history, or fell
  behind while the log was trimmed) replays etcd's own history with a dedicated watch
  from its cursor, until it reaches a revision at or above the log's floor; from there
  the log has everything, and it goes back to the log. Nothing is skipped.
- When the feed or a replay breaks (member died, etcd restarted), it reopens from the
  last revision it delivered after a backoff. If etcd compacted that history meanwhile,
  the watcher gets one RESYNC event with the full state (the feed appends it to the
  log, so every watcher on the log gets it in order).
- Watches carry etcd's `hasleader` metadata, so a member cut off from its cluster ends
  the stream instead of leaving it silently idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aetcd.exceptions as ax
import grpc
from aetcd import rpc, utils

from gossamer.discovery import etcd_keys as ek
from gossamer.discovery.changelog import DEFAULT_MAX_EVENTS, ChangeLog
from gossamer.discovery.model import Event
from gossamer.discovery.store import StoreUnavailable
from gossamer.errors import GossamerError
from gossamer.logs import event as log_event

log = logging.getLogger(__name__)
REQUIRE_LEADER = (("hasleader", "true"),)
_BROKEN = (ax.ClientError, grpc.aio.AioRpcError, StoreUnavailable, GossamerError)


class Compacted(Exception):
    """The revision asked for is older than etcd's history (it was compacted)."""


async def watch_stream(
    channel: Any, layout: ek.KeyLayout, start_revision: int
) -> AsyncIterator[tuple[int, list[Event]]]:
    """One etcd watch of the registry prefix from `start_revision`, per revision."""
    create = rpc.WatchCreateRequest(
        key=layout.root,
        range_end=utils.prefix_range_end(layout.root),
        start_revision=max(start_revision, 1),
    )
    stop = asyncio.Event()

    async def requests() -> AsyncIterator[Any]:
        yield rpc.WatchRequest(create_request=create)
        await stop.wait()  # keep our side open: closing it would end the stream

    call = rpc.WatchStub(channel).Watch(requests(), metadata=REQUIRE_LEADER)
    try:
        async for response in call:
            if response.compact_revision:
                raise Compacted(response.compact_revision)
            if response.canceled:
                raise GossamerError(f"etcd cancelled the watch: {response.cancel_reason}")
            revision, batch = 0, list[Event]()
            for item in response.events:
                kv = item.kv
                if kv.mod_revision != revision and batch:
                    yield revision, batch
                    batch = []
                revision = kv.mod_revision
                decoded = _decode(layout, item)
                if decoded is not None:
                    batch.append(decoded)
            if batch:
                yield revision, batch
    finally:
        stop.set()
        call.cancel()


def _decode(layout: ek.KeyLayout, item: Any) -> Event | None:
    kv = item.kv
    try:
        return ek.decode_event(
            layout, item.type == rpc.Event.PUT, kv.key, kv.value, kv.mod_revision
        )
    except ek.BadValue as exc:
        log_event(log, logging.WARNING, "ignored a malformed registry record", error=str(exc))
        return None


class WatchCache:
    """The shared feed and log of one store, and the watches served from them."""

    def __init__(
        self,
        channel: Callable[[], Any],
        layout: ek.KeyLayout,
        resync: Callable[[], Awaitable[Event | None]],
        delays: Callable[[], Callable[[], float]],
        *,
        max_events: int = DEFAULT_MAX_EVENTS,
    ) -> None:
        self._channel = channel
        self._layout = layout
        self._resync = resync
        self._delays = delays
        self._max_events = max_events
        self._log: ChangeLog | None = None
        self._feed: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()

    @property
    def log(self) -> ChangeLog | None:
        return self._log

    async def close(self) -> None:
        self._closed.set()
        if self._log is not None:
            self._log.close()
        if self._feed is not None:
            self._feed.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._feed
            self._feed = None

    async def _pause(self, delay: float, what: str, exc: BaseException) -> None:
        log_event(log, logging.INFO, what, error=str(exc), retry_in=round(delay, 3))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._closed.wait()

    def _start(self, from_revision: int) -> ChangeLog:
        if self._log is None:
            self._log = ChangeLog(self._max_events, start_revision=from_revision)
            self._feed = asyncio.create_task(self._run_feed(from_revision), name="etcd-watch-feed")
        return self._log

    async def _run_feed(self, cursor: int) -> None:
        assert self._log is not None
        next_delay = self._delays()
        while not self._closed.is_set():
            try:
                async for revision, events in watch_stream(
                    self._channel(), self._layout, cursor + 1
                ):
                    next_delay = self._delays()
                    if events and revision > self._log.head:
                        self._log.append(revision, events)
                    cursor = max(cursor, revision)
            except Compacted:
                resync = await self._resync()
                if resync is None:
                    return
                if resync.revision > self._log.head:
                    self._log.append(resync.revision, [resync])
                cursor = max(cursor, resync.revision)
            except _BROKEN as exc:
                await self._pause(next_delay(), "watch feed broke, resuming", exc)

    async def watch(self, from_revision: int) -> AsyncIterator[Event]:
        """Every change after `from_revision`, in order (RESYNC if it was compacted)."""
        log = self._start(from_revision)
        cursor = from_revision
        while not self._closed.is_set():
            batch = log.since(cursor)
            if batch is None:  # older than the log: replay etcd's history to reach it
                async for change in self._replay(cursor, log):
                    yield change
                    cursor = change.revision
                continue
            if batch:
                for change in batch:
                    yield change
                cursor = batch[-1].revision
                continue
            await log.wait_beyond(cursor)

    async def _replay(self, cursor: int, log: ChangeLog) -> AsyncIterator[Event]:
        """Events after `cursor` from a dedicated etcd watch, up to the log's floor."""
        next_delay = self._delays()
        while not self._closed.is_set():
            try:
                async for revision, events in watch_stream(
                    self._channel(), self._layout, cursor + 1
                ):
                    next_delay = self._delays()
                    for change in events:
                        yield change
                    cursor = revision
                    if revision >= log.floor:  # the log has everything after this
                        return
            except Compacted:
                resync = await self._resync()
                if resync is None:
                    return
                yield resync
                if resync.revision >= log.floor:
                    return
                cursor = resync.revision
            except _BROKEN as exc:
                await self._pause(next_delay(), "history replay broke, resuming", exc)
