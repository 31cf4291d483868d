"""Opaque byte relays between two transports, half-close respected.

`splice(a, b)` makes each transport's protocol forward what it reads to the other one.
When one side sends EOF (a TCP FIN, or a TLS close_notify through `TlsLayer`) the
other side's write direction is shut (`write_eof`) while the opposite direction keeps
flowing; the relay closes once both directions are done, or at once when a side
breaks. Flow control: when one transport's write buffer is full, reading from the
other pauses until it drains.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


class _Half(asyncio.Protocol):
    __slots__ = ("bytes_in", "eof", "peer", "relay", "transport")

    def __init__(self, relay: Relay, transport: Any, peer: Any) -> None:
        self.relay = relay
        self.transport = transport  # where this half reads from
        self.peer = peer  # where it writes to
        self.eof = False
        self.bytes_in = 0

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        self.peer.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        if self.peer.can_write_eof():
            try:
                self.peer.write_eof()
            except (OSError, RuntimeError):
                self.relay.close()
        self.relay.check_done()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.relay.lost(self)

    def pause_writing(self) -> None:
        self.peer.pause_reading()

    def resume_writing(self) -> None:
        self.peer.resume_reading()


class Pending(asyncio.Protocol):
    """Holds what a connection sends until `splice` takes it over (bounded: reading
    pauses past `limit` bytes)."""

    def __init__(self, limit: int = 262144) -> None:
        self.transport: Any = None
        self.data = bytearray()
        self.eof = False
        self.lost = False
        self.limit = limit

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data += data
        if len(self.data) > self.limit:
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self.eof = True
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


class Relay:
    """Two halves; `on_close(bytes_a_to_b, bytes_b_to_a)` runs once when both are done."""

    def __init__(self, a: Any, b: Any, on_close: Callable[[int, int], None] | None = None) -> None:
        self.a = _Half(self, a, b)
        self.b = _Half(self, b, a)
        self._on_close = on_close
        self._closed = False

    def check_done(self) -> None:
        if self.a.eof and self.b.eof:
            self.close()

    def lost(self, half: _Half) -> None:
        other = self.b if half is self.a else self.a
        if not other.eof:
            # one side is gone: let the other flush what it has, then close
            other.transport.close()
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for half in (self.a, self.b):
            if not half.transport.is_closing():
                half.transport.close()
        if self._on_close is not None:
            self._on_close(self.a.bytes_in, self.b.bytes_in)


def splice(
    a: Any,
    b: Any,
    a_pending: bytes | bytearray = b"",
    b_pending: bytes | bytearray = b"",
    on_close: Callable[[int, int], None] | None = None,
    *,
    a_eof: bool = False,
    b_eof: bool = False,
) -> Relay:
    """Relay bytes between transports `a` and `b`. `a_pending` was already read from `a`
    (goes to `b`), `b_pending` from `b` (goes to `a`); `a_eof`/`b_eof`: that side had
    already sent EOF."""
    relay = Relay(a, b, on_close)
    a.set_protocol(relay.a)
    b.set_protocol(relay.b)
    if a_pending:
        relay.a.data_received(bytes(a_pending))
    if b_pending:
        relay.b.data_received(bytes(b_pending))
    if a.is_closing() or b.is_closing():
        relay.close()
        return relay
    if a_eof:
        relay.a.eof_received()
    if b_eof:
        relay.b.eof_received()
    a.resume_reading()
    b.resume_reading()
    return relay


def splice_pending(
    a: Any,
    a_state: Pending,
    b: Any,
    b_state: Pending,
    on_close: Callable[[int, int], None] | None = None,
) -> Relay:
    """`splice` two transports whose protocols were `Pending` until now."""
    if a_state.lost or b_state.lost:
        relay = Relay(a, b, on_close)
        relay.close()
        return relay
    return splice(a, b, a_state.data, b_state.data, on_close, a_eof=a_state.eof, b_eof=b_state.eof)
