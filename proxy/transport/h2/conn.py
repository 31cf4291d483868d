"""What both ends of a sidecar HTTP/2 connection share: the h2 state machine on an
asyncio transport, flow-controlled sending, and response/request bodies that return
flow-control credit only as they are read.

Theory of operation (RFC 9113 section 5.2):
- Receiving: DATA goes into an `H2Body` (a `BodyStream`). Its bytes are acknowledged
  to the peer (WINDOW_UPDATE) only when the consumer reads them, so a slow reader stops
  the peer at the stream window (`STREAM_WINDOW`) instead of making the sidecar buffer:
  backpressure per stream, without pausing the other streams of the connection.
- Sending: `send_data` writes at most the smaller of the stream's and the connection's
  send window (and the peer's frame size), then waits for WINDOW_UPDATE; it also waits
  while the transport's write buffer is above its high-water mark.
- Header lists are bytes pairs. Connection-specific headers (RFC 9113 8.2.2) are never
  forwarded; `te` only as `trailers`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from gossamer.proxy.transport.http1.body import BodyStream

Headers = list[tuple[bytes, bytes]]

STREAM_WINDOW = 262144  # what one stream may have in flight towards the sidecar
CONNECTION_WINDOW = 4 * 1048576  # ... and all streams of a connection together
MAX_CONCURRENT_STREAMS = 1000  # advertised by the client side (servers: abuse.H2Limits)
# the most DATA written at once on one stream, whatever frame size the peer allows, so
# what each stream can queue beyond the transport's high-water mark stays small
MAX_DATA_CHUNK = 65536
MAX_HEADER_LIST = 65536
# a large read is given to h2 in pieces of this size, so parsing stops soon after the
# connection is closed (a 256 KiB read of a rapid-reset flood is 8,000 streams)
RECEIVE_SLICE = 16384
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"http2-settings",
    }
)
CANCEL = h2.errors.ErrorCodes.CANCEL
REFUSED_STREAM = h2.errors.ErrorCodes.REFUSED_STREAM
INTERNAL_ERROR = h2.errors.ErrorCodes.INTERNAL_ERROR
NO_ERROR = h2.errors.ErrorCodes.NO_ERROR
ENHANCE_YOUR_CALM = h2.errors.ErrorCodes.ENHANCE_YOUR_CALM


class StreamGone(ConnectionResetError):
    """The stream (or the whole connection) ended before what was to be sent on it."""


def forwardable(headers: Iterable[tuple[bytes, bytes]]) -> Headers:
    """End-to-end headers in lower case, without pseudo and connection headers."""
    out: Headers = []
    for name, v in headers:
        k = name.lower()
        if k[:1] == b":" or k in HOP_BY_HOP or (k == b"te" and v.lower() != b"trailers"):
            continue
        out.append((k, v))
    return out


class _Connection(h2.connection.H2Connection):
    # h2 remembers 65,536 closed streams per connection (for frames that arrive late),
    # several MB on a busy connection; a late frame for a stream forgotten sooner only
    # gets a RST_STREAM(STREAM_CLOSED)
    MAX_CLOSED_STREAMS = 1024


class _ServerConnection(_Connection):
    # h2 treats a stream over SETTINGS_MAX_CONCURRENT_STREAMS as a connection error; the
    # server refuses it with REFUSED_STREAM instead (RFC 9113 section 5.1.2 allows either),
    # counting its own unfinished streams (server.py). h2 compares this property with the
    # limit when a stream opens, and purges its closed streams while computing it.
    @property
    def open_inbound_streams(self) -> int:
        super().open_inbound_streams  # noqa: B018 - for the purge
        return 0


class H2Body(BodyStream):
    """A body arriving on an HTTP/2 stream; `trailers` are set when they arrive (before
    the body ends). Reading returns flow-control credit; discarding resets the stream."""

    __slots__ = ("_ack", "_cancel", "on_end", "trailers")

    def __init__(
        self, ack: Callable[[int], None], cancel: Callable[[], None], high: int = STREAM_WINDOW
    ) -> None:
        super().__init__(None, high)
        self._ack = ack
        self._cancel = cancel
        self.trailers: Headers | None = None
        self.on_end: Callable[[H2Body], None] | None = None

    @property
    def broken(self) -> bool:
        """Ended by an error (a reset), not by END_STREAM."""
        return self._error is not None

    def read_nowait(self) -> bytes | None:
        data = BodyStream.read_nowait(self)
        if data:
            self._ack(len(data))
        return data

    def finish(self) -> None:
        BodyStream.finish(self)
        self._ended()

    def fail(self, exc: BaseException) -> None:
        BodyStream.fail(self, exc)
        self._ended()

    def _ended(self) -> None:
        on_end, self.on_end = self.on_end, None
        if on_end is not None:
            on_end(self)

    def abort_producer(self) -> None:
        if not self.done:
            self._cancel()
        BodyStream.abort_producer(self)

    def resume_producer(self) -> None:
        while self.read_nowait():
            pass


class H2Base(asyncio.Protocol):
    """An h2 connection on a transport; subclasses handle the events."""

    # bytes queued in the transport (while it is paused) beyond which the peer is taken
    # to have stopped reading: `backlog_exceeded`
    max_write_backlog: float = float("inf")

    def __init__(self, *, client_side: bool, max_streams: int = MAX_CONCURRENT_STREAMS) -> None:
        self.loop = asyncio.get_running_loop()
        # outbound headers are already lower-case and filtered (`forwardable`): h2's
        # validation and normalisation of them would only cost time
        config = h2.config.H2Configuration(
            client_side=client_side,
            header_encoding=None,
            validate_inbound_headers=True,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        self.h2: h2.connection.H2Connection = (
            _Connection(config) if client_side else _ServerConnection(config)
        )
        self.h2.local_settings = h2.settings.Settings(
            client=client_side,
            initial_values={
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: max_streams,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST,
            },
        )
        self.transport: Any = None
        self.closed = False
        # GOAWAY sent or received: no new streams, close once the open ones have ended
        self.goaway = False
        self._last_stream = 0  # the highest stream the peer started (named in our GOAWAY)
        self._windows: dict[int, asyncio.Future[None]] = {}
        self._write_paused = False
        self._flush_pending = False
        self._drain_waiter: asyncio.Future[None] | None = None

    # -- transport -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(CONNECTION_WINDOW - 65535)
        self.flush()

    def flush(self) -> None:
        """Write what h2 has queued, once per event-loop turn: the frames of every
        stream that made progress in this turn go out in one write (one TLS record
        batch, one syscall) instead of one per frame."""
        if not self._flush_pending:
            self._flush_pending = True
            self.loop.call_soon(self.flush_now)

    def flush_now(self) -> None:
        self._flush_pending = False
        data = self.h2.data_to_send()
        if data and not self.closed:
            self.transport.write(data)
            if (
                self._write_paused
                and self.transport.get_write_buffer_size() > self.max_write_backlog
            ):
                self.backlog_exceeded()

    def backlog_exceeded(self) -> None:
        """More than `max_write_backlog` bytes wait for a peer that does not read."""
        self.abort()

    def data_received(self, data: bytes) -> None:
        if len(data) <= RECEIVE_SLICE:
            self._receive(data)
            return
        for start in range(0, len(data), RECEIVE_SLICE):
            if self.closed:
                return
            self._receive(data[start : start + RECEIVE_SLICE])

    def _receive(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self.flush()  # the GOAWAY h2 queued
            self.protocol_error(exc)
            return
        for event in events:
            if self.closed:  # e.g. closed for abuse: the rest is not worth handling
                return
            self.handle(event)
        self.flush()

    # -- GOAWAY ---------------------------------------------------------------------------
    # h2's state machine closes the whole connection on sending or receiving GOAWAY, but
    # RFC 9113 section 6.8 lets the streams already started finish: the sidecar keeps the
    # connection open (refusing new streams itself, `goaway`) until they have, then
    # closes it (`close_if_done`, which each side calls when one of its streams ends).
    @property
    def active(self) -> int:
        """Streams still open on this connection."""
        raise NotImplementedError

    def close(self) -> None:
        """Write what is queued, then close the transport."""
        if not self.closed:
            if self.transport is not None:
                self.flush_now()
            self.closed = True
            if self.transport is not None:
                self.transport.close()

    def close_if_done(self) -> None:
        """After GOAWAY, close once the last open stream has ended."""
        if self.goaway and not self.active:
            self.close()

    def shutdown(self) -> None:
        """Send GOAWAY (naming the last stream the peer started): no new streams; close
        when the open ones have ended."""
        if self.closed:
            return
        if not self.goaway:
            self.goaway = True
            self.send_goaway(self._last_stream, NO_ERROR)
        self.close_if_done()

    def goaway_received(self, last_stream_id: int) -> None:
        """The peer sent GOAWAY (`goaway` is already set); streams above `last_stream_id`
        were not processed by it."""

    def _keep_open(self) -> None:
        machine = self.h2.state_machine
        if machine.state is h2.connection.ConnectionState.CLOSED and not self.closed:
            machine.state = (
                h2.connection.ConnectionState.CLIENT_OPEN
                if self.h2.config.client_side
                else h2.connection.ConnectionState.SERVER_OPEN
            )

    def send_goaway(self, last_stream_id: int, code: int = 0) -> None:
        self.h2.close_connection(code, last_stream_id=last_stream_id)
        self._keep_open()
        self.flush()

    def handle(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
            self._wake_windows(getattr(event, "stream_id", 0))
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._keep_open()
            self.goaway = True
            self.goaway_received(event.last_stream_id or 0)
            self.close_if_done()

    def protocol_error(self, exc: Exception) -> None:
        self.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        self.closed = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        err = StreamGone("the connection was lost")
        for waiter in self._windows.values():
            if not waiter.done():
                waiter.set_exception(err)
                waiter.exception()
        self._windows.clear()
        self.resume_writing()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        w = self._drain_waiter
        if w is not None:
            self._drain_waiter = None
            if not w.done():
                w.set_result(None)

    # -- sending with flow control --------------------------------------------------------
    def _wake_windows(self, stream_id: int) -> None:
        if stream_id:
            waiter = self._windows.pop(stream_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
            return
        waiters, self._windows = self._windows, {}
        for waiter in waiters.values():
            if not waiter.done():
                waiter.set_result(None)

    def stream_gone(self, stream_id: int) -> None:
        """Wake a sender waiting for window on a stream that was reset or closed."""
        waiter = self._windows.pop(stream_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_exception(StreamGone("the stream was reset"))
            waiter.exception()

    async def send_data(self, stream_id: int, data: bytes, end: bool = False) -> None:
        """Send `data` on a stream as the windows allow (raises StreamGone when
        the stream or the connection goes away first)."""
        conn = self.h2
        view = memoryview(data)
        try:
            while True:
                if self.closed:
                    raise StreamGone("the connection is closed")
                if self._write_paused:
                    self._drain_waiter = self.loop.create_future()
                    await self._drain_waiter
                    continue
                if not view:
                    if end:
                        conn.end_stream(stream_id)
                        self.flush()
                    return
                size = min(
                    conn.local_flow_control_window(stream_id),
                    conn.max_outbound_frame_size,
                    MAX_DATA_CHUNK,
                )
                if size <= 0:
                    waiter = self._windows.get(stream_id)
                    if waiter is None:
                        waiter = self._windows[stream_id] = self.loop.create_future()
                    await waiter
                    continue
                chunk, view = view[:size], view[size:]
                conn.send_data(stream_id, bytes(chunk), end_stream=end and not view)
                self.flush()
                if not view:
                    return
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError) as exc:
            raise StreamGone(f"stream {stream_id} closed: {exc}") from None

    def send_headers(self, stream_id: int, headers: Headers, end: bool = False) -> None:
        """Send a header block (raises StreamGone when the stream is gone)."""
        if self.closed:
            raise StreamGone("the connection is closed")
        try:
            self.h2.send_headers(stream_id, headers, end_stream=end)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError) as exc:
            raise StreamGone(f"stream {stream_id} closed: {exc}") from None
        self.flush()

    def ack(self, stream_id: int, size: int) -> None:
        """Return flow-control credit for `size` bytes read from a stream."""
        if self.closed:
            return
        try:
            self.h2.acknowledge_received_data(size, stream_id)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            return
        self.flush()

    def reset(self, stream_id: int, code: int = CANCEL) -> None:
        if self.closed:
            return
        try:
            self.h2.reset_stream(stream_id, code)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            return
        self.stream_gone(stream_id)
        self.flush()
