"""The control plane's side of the Tap stream: which sidecars can be tapped, which taps are open.

Every sidecar keeps a `Tap/Watch` stream (mesh.proto) open on the replica it is
connected to; `TapHub.watch` serves it. The sidecar's service comes from its verified
client certificate (control/peer.py `require_peer`), never from a message, so a sidecar
can only answer taps of its own service, and the own side of its records (`destination`
of inbound, `source` of outbound) is set to that identity (a record with neither
direction is dropped). Each stream is a `SidecarLink` kept in the hub while it is open.

An operator's tap (`open`, from control/tap_api.py) gets an id and is sent as a
`TapCommand.open` to every link of its service, including links that connect while the
tap is open; `close` sends `TapCommand.close` to them. Records arriving in `TapReport`s
(filtered and capped by the sidecars) go into the tap's bounded queue; a reader that
falls behind loses records there, counted as dropped like the sidecars' own drops.
At most `MAX_TAPS` taps are open at once (`TooManyTaps`).

A replica sees only the sidecars whose Tap stream is on it (with several replicas each
sidecar is on its own node's, or preferred, replica).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc

from gossamer.contract import mesh_pb2
from gossamer.contract.identity import ServiceKey, spiffe_id
from gossamer.control.peer import require_peer
from gossamer.errors import GossamerError

log = logging.getLogger("gossamer.control.tap")

MAX_TAPS = 16
RECORD_QUEUE = 1000  # records waiting for the operator's reader, per tap


class TooManyTaps(GossamerError):
    """The replica has MAX_TAPS taps open."""


@dataclass(frozen=True)
class TapSpec:
    service: str
    namespace: str | None = None  # None: any namespace
    direction: str = ""
    to: str = ""
    path_prefix: str = ""
    method: str = ""
    rate: int = 0  # 0: the sidecars' cap

    def selects(self, service: str, namespace: str) -> bool:
        return service == self.service and self.namespace in (None, namespace)

    def command(self, tap_id: str) -> mesh_pb2.TapCommand:
        return mesh_pb2.TapCommand(
            open=mesh_pb2.TapOpen(
                id=tap_id,
                direction=self.direction,
                to=self.to,
                path_prefix=self.path_prefix,
                method=self.method,
                rate=self.rate,
            )
        )


@dataclass(eq=False)
class SidecarLink:
    """One sidecar's open Tap stream: the commands waiting to be sent to it."""

    service: str
    namespace: str
    instance: str
    commands: asyncio.Queue[mesh_pb2.TapCommand | None] = field(default_factory=asyncio.Queue)


@dataclass(eq=False)
class OpenTap:
    id: str
    spec: TapSpec
    records: asyncio.Queue[mesh_pb2.TapRecord] = field(
        default_factory=lambda: asyncio.Queue(RECORD_QUEUE)
    )
    received: int = 0
    sent: int = 0  # records written to the operator's stream (control/tap_api.py)
    dropped: int = 0  # at the sidecars (their reports) and here (queue full)
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class TapHub:
    def __init__(self, trust_domain: str, *, max_taps: int = MAX_TAPS) -> None:
        self.trust_domain = trust_domain
        self.max_taps = max_taps
        self.links: set[SidecarLink] = set()
        self.taps: dict[str, OpenTap] = {}
        self._ids = itertools.count(1)
        self.opened_total = 0
        self.closing = False  # the control plane is stopping: open taps end (tap_api.py)

    # -- operators' taps ---------------------------------------------------------------
    def open(self, spec: TapSpec) -> OpenTap:
        if len(self.taps) >= self.max_taps:
            raise TooManyTaps(
                f"{len(self.taps)} taps are open on this control plane (at most {self.max_taps})",
                hint="wait until one ends",
            )
        tap = OpenTap(f"t{next(self._ids)}-{secrets.token_hex(4)}", spec)
        self.taps[tap.id] = tap
        self.opened_total += 1
        for link in self.links:
            if spec.selects(link.service, link.namespace):
                link.commands.put_nowait(spec.command(tap.id))
        return tap

    def close(self, tap: OpenTap) -> None:
        if self.taps.pop(tap.id, None) is None:
            return
        for link in self.links:
            if tap.spec.selects(link.service, link.namespace):
                link.commands.put_nowait(mesh_pb2.TapCommand(close=tap.id))

    def shutdown(self) -> None:
        """The control plane is stopping: wake every open tap's reader so it ends now."""
        self.closing = True
        for tap in self.taps.values():
            tap.wake.set()

    def counts(self) -> tuple[int, int, int]:
        """(taps open, sidecars' streams, taps opened since start), for /metrics."""
        return len(self.taps), len(self.links), self.opened_total

    def sidecars(self, spec: TapSpec) -> int:
        """How many sidecars this tap reaches now."""
        return sum(1 for link in self.links if spec.selects(link.service, link.namespace))

    # -- sidecars' streams -------------------------------------------------------------
    def connect(self, service: str, namespace: str, instance: str) -> SidecarLink:
        link = SidecarLink(service, namespace, instance)
        self.links.add(link)
        for tap in self.taps.values():  # a late joiner gets the taps already open
            if tap.spec.selects(service, namespace):
                link.commands.put_nowait(tap.spec.command(tap.id))
        return link

    def disconnect(self, link: SidecarLink) -> None:
        self.links.discard(link)

    def deliver(self, link: SidecarLink, report: mesh_pb2.TapReport) -> None:
        tap = self.taps.get(report.tap_id)
        if tap is None or not tap.spec.selects(link.service, link.namespace):
            return  # a tap that ended meanwhile, or not this sidecar's
        tap.dropped += report.dropped
        own = spiffe_id(self.trust_domain, ServiceKey(link.namespace, link.service))
        for record in report.records:
            # the sidecar's own side is its certificate's identity, whatever it claims
            if record.direction == "inbound":
                record.destination = own
            elif record.direction == "outbound":
                record.source = own
            else:
                tap.dropped += 1
                continue
            try:
                tap.records.put_nowait(record)
                tap.received += 1
            except asyncio.QueueFull:
                tap.dropped += 1
        tap.wake.set()

    async def watch(
        self,
        reports: AsyncIterator[mesh_pb2.TapReport],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[mesh_pb2.TapCommand]:
        """Serve one sidecar's Tap/Watch stream."""
        peer = await require_peer(context, self.trust_domain, "tap")
        hello = await anext(aiter(reports), None)
        if hello is None:
            return
        link = self.connect(peer.service, peer.namespace, hello.instance_id)
        reader = asyncio.ensure_future(self._read(link, reports))
        try:
            while True:
                command = await link.commands.get()
                if command is None:
                    break
                yield command
        finally:
            self.disconnect(link)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader

    async def _read(self, link: SidecarLink, reports: AsyncIterator[mesh_pb2.TapReport]) -> None:
        try:
            async for report in reports:
                self.deliver(link, report)
        finally:
            link.commands.put_nowait(None)  # the sidecar left: end the stream
