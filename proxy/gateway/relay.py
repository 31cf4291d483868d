"""The gateway's data path: read the ClientHello, pick a local instance, splice bytes.

One `HelloReader` protocol per accepted connection (docs/architecture.md, "Several
nodes"):

1. It buffers what the peer sends until `client_hello.parse_client_hello` has the whole
   ClientHello (at most `MAX_HELLO` bytes, within `hello_timeout` seconds from the
   accept: bytes arriving meanwhile do not extend it). A stream that is not TLS, a
   malformed or oversized hello, or the timeout closes the connection, counted in
   `gossamer_gateway_rejected_total{reason}`.
2. The SNI picks a healthy instance of that service port on this node (`table.py`);
   an unknown name or no instance closes the connection (counted). Reading pauses.
3. It connects to the instance's sidecar inbound port (`connect_timeout`; a refused
   or timed-out connect tries the next instance once, then closes: `connect_failure`)
   and `splice`s the two connections (proxy/listeners/tcp.py): the buffered hello goes
   first, bytes flow both ways untouched (TLS is never terminated: the two sidecars
   do the mutual-TLS handshake through the gateway), half-close passes through, and a
   full write buffer on one side pauses reading on the other (back-pressure).

The connection cap (`max_connections`, `gossamer.fdlimits.ConnectionLimit`) lets a
newcomer displace the oldest connection still at step 1 or 2, so peers that never send
a hello cannot keep real ones out; routed connections are never displaced. A sweep
every second moves relayed byte counts into the metrics and closes relays with no byte
in either direction for `idle_timeout` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gossamer.contract import xds
from gossamer.contract.identity import ServiceKey
from gossamer.fdlimits import ConnectionLimit
from gossamer.logs import event
from gossamer.proxy.gateway.client_hello import MAX_HELLO, HelloAssembler, HelloError
from gossamer.proxy.gateway.metrics import GatewayMetrics
from gossamer.proxy.gateway.table import Miss, RouteTable, Target
from gossamer.proxy.listeners.tcp import Pending, Relay, splice

log = logging.getLogger("gossamer.proxy.gateway")

SWEEP_INTERVAL = 1.0


@dataclass(frozen=True)
class RelayLimits:
    max_connections: int = 8192  # 0: no cap
    hello_timeout: float = 10.0
    connect_timeout: float = 2.0
    idle_timeout: float = 3600.0  # 0: none


class _Spliced:
    """One relayed connection: what the metrics have counted of it, when it last moved."""

    __slots__ = ("counted", "last_move", "peer_node", "relay", "service")

    def __init__(self, relay: Relay, service: str, peer_node: str) -> None:
        self.relay = relay
        self.service = service
        self.peer_node = peer_node
        self.counted = (0, 0)
        self.last_move = time.monotonic()


class Relays:
    """The gateway's state shared by its connections: routing table, metrics, limits."""

    def __init__(self, limits: RelayLimits, metrics: GatewayMetrics) -> None:
        self.limits = limits
        self.metrics = metrics
        self.table: RouteTable | None = None
        self.spliced: set[_Spliced] = set()
        self.connecting: set[asyncio.Task[None]] = set()
        self.limit = ConnectionLimit(
            limits.max_connections,
            evict_new=True,
            on_overflow=lambda: metrics.reject("overflow"),
            on_report=self._report_overflow,
        )
        self._sweeper: asyncio.Task[None] | None = None

    def _report_overflow(self, count: int) -> None:
        event(log, logging.WARNING, "connection limit reached; connections closed",
              listener="gateway", limit=self.limits.max_connections, closed=count)  # fmt: skip

    def factory(self) -> Any:
        """The listening socket's protocol factory, with the connection cap in front."""
        return self.limit.wrap(lambda: HelloReader(self))

    def start(self) -> None:
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep(), name="sweep")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for task in list(self.connecting):
            task.cancel()
        for item in list(self.spliced):
            item.relay.close()

    def account(self, item: _Spliced) -> int:
        """Move the bytes `item` relayed since last time into the metrics; returns them."""
        received, sent = item.relay.a.bytes_in, item.relay.b.bytes_in
        new_in, new_out = received - item.counted[0], sent - item.counted[1]
        if new_in:
            self.metrics.moved(item.service, item.peer_node, "received", new_in)
        if new_out:
            self.metrics.moved(item.service, item.peer_node, "sent", new_out)
        item.counted = (received, sent)
        return new_in + new_out

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            now, idle = time.monotonic(), self.limits.idle_timeout
            for item in list(self.spliced):
                if self.account(item):
                    item.last_move = now
                elif idle and now - item.last_move >= idle:
                    self.metrics.idle_closed += 1
                    item.relay.close()


class HelloReader(asyncio.Protocol):
    """Steps 1-3 of the module docstring for one downstream connection."""

    def __init__(self, relays: Relays) -> None:
        self.relays = relays
        self.transport: Any = None
        self.hello = HelloAssembler(MAX_HELLO)
        self.buffer = self.hello.data  # every byte received, forwarded once spliced
        self.eof = False
        self.lost = False
        self.handed_over = False
        self.peer = ""
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]) if peer else ""
        self.relays.metrics.active += 1
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.relays.limits.hello_timeout, self._timed_out)

    def _timed_out(self) -> None:
        self._refuse("hello_timeout", "no complete ClientHello in time")

    def _refuse(self, reason: str, detail: str) -> None:
        self.relays.metrics.reject(reason)
        event(log, logging.DEBUG, "connection refused", reason=reason, detail=detail,
              peer=self.peer)  # fmt: skip
        if self._timer is not None:
            self._timer.cancel()
        self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self._timer is None:  # routing under way: hold what comes (reading is paused)
            self.buffer += data
            return
        try:
            hello = self.hello.feed(data)
        except HelloError as exc:
            self._refuse(exc.reason, exc.detail)
            return
        if hello is None:
            return
        self._timer.cancel()
        self._timer = None
        self.transport.pause_reading()
        table = self.relays.table
        found = (
            table.route(hello.server_name)
            if table is not None
            else Miss("no_endpoint", "no configuration yet")
        )
        if isinstance(found, Miss):
            self._refuse(found.reason, found.detail)
            return
        self.relays.limit.proven(self.transport)
        task = asyncio.get_running_loop().create_task(self._connect(found, table))
        self.relays.connecting.add(task)  # a strong reference until it is done
        task.add_done_callback(self.relays.connecting.discard)

    def eof_received(self) -> bool:
        self.eof = True
        if self._timer is not None:  # the peer ended before a whole hello
            self._refuse("malformed", "the connection ended inside the ClientHello")
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.handed_over:
            self.relays.metrics.active -= 1
            self.relays.limit.closed(self.transport)

    async def _connect(self, target: Target, table: RouteTable | None) -> None:
        loop = asyncio.get_running_loop()
        tried = {(target.address, target.endpoint_port)}
        upstream: Any = None
        state = Pending()
        for attempt in range(2):
            try:
                upstream, _ = await asyncio.wait_for(
                    loop.create_connection(
                        _protocol_of(state), target.address, target.endpoint_port
                    ),
                    self.relays.limits.connect_timeout,
                )
                break
            except (OSError, TimeoutError) as exc:
                event(log, logging.WARNING, "local instance unreachable", service=target.service,
                      instance=f"{target.address}:{target.endpoint_port}", error=str(exc) or "timeout")  # fmt: skip
                again = (
                    table.route(_sni_of(target, table))
                    if table is not None and attempt == 0
                    else None
                )
                if not isinstance(again, Target) or (again.address, again.endpoint_port) in tried:
                    break
                target = again
                tried.add((target.address, target.endpoint_port))
                state = Pending()
        if upstream is None:
            self._refuse("connect_failure", "no local instance answered")
            return
        if self.lost:
            upstream.close()
            return
        self._splice(upstream, state, target)

    def _splice(self, upstream: Any, state: Pending, target: Target) -> None:
        relays, metrics = self.relays, self.relays.metrics
        peer_node = relays.table.peer_node(self.peer) if relays.table is not None else "unknown"
        metrics.routed(target.service, peer_node)
        self.handed_over = True
        downstream = self.transport
        holder: list[_Spliced] = []
        closed: list[bool] = []

        def on_close(_a: int, _b: int) -> None:
            closed.append(True)
            metrics.active -= 1
            relays.limit.closed(downstream)
            if holder:
                relays.account(holder[0])
                relays.spliced.discard(holder[0])

        relay = splice(downstream, upstream, self.buffer, state.data, on_close,
                       a_eof=self.eof, b_eof=state.eof)  # fmt: skip
        item = _Spliced(relay, target.service, peer_node)
        holder.append(item)
        if closed:  # splice closed at once (a side was already gone)
            relays.account(item)
        else:
            relays.spliced.add(item)


def _protocol_of(state: Pending) -> Callable[[], Pending]:
    return lambda: state


def _sni_of(target: Target, table: RouteTable) -> str:
    name, _, namespace = target.service.partition(".")
    return xds.sni(table.trust_domain, ServiceKey(namespace, name), target.port)
