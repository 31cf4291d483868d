"""What every connected xDS stream is doing, for the operator API and `gossamer status`.

Stream handlers record into a `StreamInfo` (node, peer, identity, per-type sent and
ACKed versions, the last NACK with its error); `StreamRegistry` lists the open streams
and remembers the last NACK per (node id, type) after a stream ends, so a dashboard can
show why a sidecar refused a configuration even if it has reconnected since.
Everything here is plain data with an injected clock; `to_dict()` gives JSON-ready views.
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gossamer.contract.xds import SHORT_NAMES

MAX_REMEMBERED_NACKS = 10_000


@dataclass(frozen=True)
class Nack:
    version: str
    error: str
    at: float

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "error": self.error, "at": self.at}


@dataclass
class TypeState:
    sent_version: str = ""
    sent_at: float | None = None
    acked_version: str = ""
    acked_at: float | None = None
    last_nack: Nack | None = None
    wildcard: bool = False
    subscribed: int = 0
    responses: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "sent_version": self.sent_version,
            "sent_at": self.sent_at,
            "acked_version": self.acked_version,
            "acked_at": self.acked_at,
            "last_nack": self.last_nack.to_dict() if self.last_nack else None,
            "wildcard": self.wildcard,
            "subscribed": self.subscribed,
            "responses": self.responses,
        }


@dataclass
class StreamInfo:
    stream_id: int
    protocol: str  # "sotw" or "delta"
    peer: str
    connected_at: float
    node_id: str = ""
    node: str = ""  # the locality node it claims (the sidecar's --node), "" for none
    node_cluster: str = ""
    group: str = ""
    identity: str | None = None
    cert_not_after: float | None = None  # the client certificate's expiry (mTLS port)
    user_agent: str = ""
    stale_nonces: int = 0
    types: dict[str, TypeState] = field(default_factory=dict)
    _registry: StreamRegistry | None = field(default=None, repr=False, compare=False)

    def type(self, type_url: str) -> TypeState:
        state = self.types.get(type_url)
        if state is None:
            state = self.types[type_url] = TypeState()
        return state

    def record_sent(self, type_url: str, version: str) -> None:
        state = self.type(type_url)
        state.sent_version = version
        state.sent_at = self._now()
        state.responses += 1
        if self._registry is not None:
            self._registry.pushes_total += 1

    def record_ack(self, type_url: str, version: str) -> None:
        state = self.type(type_url)
        state.acked_version = version
        state.acked_at = self._now()

    def record_nack(self, type_url: str, version: str, error: str) -> None:
        nack = Nack(version, error, self._now())
        self.type(type_url).last_nack = nack
        if self._registry is not None:
            self._registry.remember_nack(self.node_id, type_url, nack)

    def record_subscription(self, type_url: str, wildcard: bool, count: int) -> None:
        state = self.type(type_url)
        state.wildcard = wildcard
        state.subscribed = count

    def _now(self) -> float:
        return self._registry.clock() if self._registry is not None else time.time()

    def to_dict(self) -> dict[str, Any]:
        return {
            "stream_id": self.stream_id,
            "protocol": self.protocol,
            "peer": self.peer,
            "connected_at": self.connected_at,
            "node_id": self.node_id,
            "node": self.node,
            "node_cluster": self.node_cluster,
            "group": self.group,
            "identity": self.identity,
            "cert_not_after": self.cert_not_after,
            "user_agent": self.user_agent,
            "stale_nonces": self.stale_nonces,
            "types": {SHORT_NAMES.get(t, t): s.to_dict() for t, s in sorted(self.types.items())},
        }


class StreamRegistry:
    """Open streams by id, plus the last NACK of every node and type."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._streams: dict[int, StreamInfo] = {}
        self._ids = itertools.count(1)
        self._nacks: OrderedDict[tuple[str, str], Nack] = OrderedDict()
        self.pushes_total = 0  # responses sent on every stream since start
        self.nacks_total = 0

    def open(self, protocol: str, peer: str) -> StreamInfo:
        info = StreamInfo(next(self._ids), protocol, peer, self.clock(), _registry=self)
        self._streams[info.stream_id] = info
        return info

    def close(self, info: StreamInfo) -> None:
        self._streams.pop(info.stream_id, None)

    def streams(self) -> list[StreamInfo]:
        return [self._streams[k] for k in sorted(self._streams)]

    def __len__(self) -> int:
        return len(self._streams)

    def remember_nack(self, node_id: str, type_url: str, nack: Nack) -> None:
        key = (node_id, type_url)
        self.nacks_total += 1
        self._nacks.pop(key, None)
        self._nacks[key] = nack
        while len(self._nacks) > MAX_REMEMBERED_NACKS:
            self._nacks.popitem(last=False)

    def last_nack(self, node_id: str, type_url: str) -> Nack | None:
        return self._nacks.get((node_id, type_url))

    def nacks(self) -> dict[str, dict[str, dict[str, Any]]]:
        """node id -> type -> last NACK, for every node that ever NACKed (bounded)."""
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for (node, type_url), nack in self._nacks.items():
            out.setdefault(node, {})[SHORT_NAMES.get(type_url, type_url)] = nack.to_dict()
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"streams": [s.to_dict() for s in self.streams()], "nacks": self.nacks()}
