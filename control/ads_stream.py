"""The life of one ADS stream, shared by the SotW and delta handlers.

Theory of operation
-------------------
A stream has two halves that never wait on each other:

- the *reader* task takes each request off the wire and applies it to the stream's
  subscription state at once (pure bookkeeping, no I/O), then wakes the writer;
- the *writer* (the handler's async generator, which gRPC drains) waits to be woken,
  then asks the cache what each subscribed type needs against the newest snapshot,
  in the order CDS, EDS, LDS, RDS, SDS (make before break), and yields the responses.

The cache's watch callback only stores "the newest snapshot is S" and wakes the writer.
So a stream whose client reads slowly holds at most one pending snapshot (newer ones
replace older ones: a bounded, coalescing queue of size one per type) and never delays
any other stream or the publisher; when it catches up it sends only the latest state.
The first request must carry the node; `resolve_group` maps it (and the peer's
identity, on an mTLS port) to the NodeGroup whose snapshots the stream follows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import grpc
from envoy.config.core.v3 import base_pb2

from gossamer.contract import xds
from gossamer.errors import GossamerError, LocalProtocolError
from gossamer.logs import event

from .cache import Snapshot, SnapshotCache
from .stream_status import StreamInfo, StreamRegistry
from .translate import NodeGroup

log = logging.getLogger("gossamer.control.ads")

Req = TypeVar("Req")
Resp = TypeVar("Resp")


@dataclass
class StreamEnvironment:
    """What a stream needs from the server: the cache, the registry of streams, and how
    to place a node in a group (and make sure that group has a snapshot)."""

    cache: SnapshotCache
    registry: StreamRegistry
    resolve_group: Callable[[base_pb2.Node, str | None], NodeGroup]
    ensure_group: Callable[[NodeGroup], None]
    control_plane_id: str = "gossamer"


class AdsStream(Generic[Req, Resp]):
    protocol = "?"

    def __init__(self, env: StreamEnvironment, peer: str, identity: str | None = None) -> None:
        self.env = env
        self.info: StreamInfo = env.registry.open(self.protocol, peer)
        self.info.identity = identity
        self.identity = identity
        self.group: NodeGroup | None = None
        self.snapshot: Snapshot | None = None
        self._wake = asyncio.Event()
        self._closed = False
        self._failure: GossamerError | None = None
        self._cancel_watch: Callable[[], None] | None = None
        self._nonces = 0
        self._finished = False

    # -- hooks for the protocol variants --------------------------------------------
    def on_request(self, request: Req) -> None:
        raise NotImplementedError

    def responses(self, snapshot: Snapshot) -> list[Resp]:
        raise NotImplementedError

    # -- shared machinery -----------------------------------------------------------
    def next_nonce(self) -> str:
        self._nonces += 1
        return str(self._nonces)

    def record_nack(self, type_url: str, version: str, message: str) -> None:
        """A client refused `version` of `type_url`: keep its error, log it once."""
        self.info.record_nack(type_url, version, message)
        event(
            log,
            logging.WARNING,
            "xds update rejected",
            node=self.info.node_id,
            type=xds.SHORT_NAMES.get(type_url, type_url),
            version=version,
            error=message[:500],
        )

    def attach(self, node: base_pb2.Node) -> None:
        """Place the stream in its node group and follow that group's snapshots."""
        self.info.node_id = node.id
        self.info.node_cluster = node.cluster
        self.info.user_agent = f"{node.user_agent_name} {node.user_agent_version}".strip()
        group = self.env.resolve_group(node, self.identity)
        self.group = group
        self.info.group = group.name
        self.info.node = group.node
        self.env.ensure_group(group)
        self._cancel_watch = self.env.cache.watch(group.name, self._on_snapshot)
        event(
            log,
            logging.INFO,
            "xds stream opened",
            stream=self.info.stream_id,
            protocol=self.protocol,
            node=node.id,
            group=group.name,
            peer=self.info.peer,
        )

    def _on_snapshot(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    async def _read(self, requests: AsyncIterator[Req]) -> None:
        try:
            async for request in requests:
                self.on_request(request)
        except asyncio.CancelledError:
            raise
        except GossamerError as exc:  # the client broke a rule: end its stream with why
            self._failure = exc
        except grpc.RpcError:  # the client went away
            pass
        except Exception as exc:  # a bug: keep the traceback, end only this stream
            log.exception("xds stream failed", extra={"fields": {"stream": self.info.stream_id}})
            self._failure = LocalProtocolError(f"internal error: {type(exc).__name__}")
        finally:
            self._closed = True
            self._wake.set()

    async def run(self, requests: AsyncIterator[Req]) -> AsyncIterator[Resp]:
        reader = asyncio.create_task(self._read(requests))
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                if self._failure is not None:
                    raise self._failure
                if self._closed:
                    return
                if self.snapshot is None:
                    continue
                for response in self.responses(self.snapshot):
                    yield response
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            self.close()

    def close(self) -> None:
        if self._cancel_watch is not None:
            self._cancel_watch()
            self._cancel_watch = None
        if not self._finished:
            self._finished = True
            self.env.registry.close(self.info)
            event(
                log,
                logging.INFO,
                "xds stream closed",
                stream=self.info.stream_id,
                node=self.info.node_id,
            )
