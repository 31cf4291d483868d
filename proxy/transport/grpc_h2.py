"""gRPC calls on one HTTP/2 connection, over h2 (sans-IO): the protocol half of the
sidecar's gRPC client (grpc_client.py has the theory of operation and the `Channel`).

`H2Connection` is the asyncio protocol of one connection; each call is a `Stream` that
frames messages (1 byte compression flag, 4 bytes length), reads the response headers
and trailers into a status, and fails with a `GrpcError` when the call or the
connection ends badly.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections import deque
from enum import IntEnum
from typing import Any
from urllib.parse import unquote

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

# gRPC status codes (https://grpc.github.io/grpc/core/md_doc_statuscodes.html)
Status = IntEnum(
    "Status",
    "OK CANCELLED UNKNOWN INVALID_ARGUMENT DEADLINE_EXCEEDED NOT_FOUND ALREADY_EXISTS "
    "PERMISSION_DENIED RESOURCE_EXHAUSTED FAILED_PRECONDITION ABORTED OUT_OF_RANGE "
    "UNIMPLEMENTED INTERNAL UNAVAILABLE DATA_LOSS UNAUTHENTICATED",
    start=0,
)


class GrpcError(Exception):
    """A call that ended with a non-OK status (same accessors as grpc's AioRpcError)."""

    def __init__(self, status: Status, message: str = "") -> None:
        super().__init__(f"{status.name}: {message}")
        self.status = status
        self.message = message

    def code(self) -> Status:
        return self.status

    def details(self) -> str:
        return self.message


WINDOW = 1 << 20


class Stream:
    """One call. `send` and `end` for the request side, `recv` for the responses."""

    def __init__(self, conn: H2Connection, stream_id: int) -> None:
        self._conn = conn
        self.id = stream_id
        self._buffer = bytearray()
        self._messages: deque[bytes] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self.error: GrpcError | None = None
        self.finished = False  # the response side ended (status known)

    async def send(self, message: bytes, *, end: bool = False) -> None:
        if self.error is not None:
            raise self.error
        await self._conn.send(self.id, struct.pack(">BI", 0, len(message)) + message, end)

    async def end(self) -> None:
        """Half-close: no more requests on this stream."""
        if self.error is None and not self.finished:
            self._conn.end_stream(self.id)

    async def recv(self) -> bytes | None:
        """The next response message; None when the call ended with OK."""
        while not self._messages:
            if self.error is not None:
                raise self.error
            if self.finished:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return self._messages.popleft()

    def cancel(self) -> None:
        if not self.finished and self.error is None:
            self._conn.reset(self.id)
            self.fail(GrpcError(Status.CANCELLED, "cancelled by the client"))

    # -- fed by the connection ---------------------------------------------------------
    def _wake(self) -> None:
        w, self._waiter = self._waiter, None
        if w is not None and not w.done():
            w.set_result(None)

    def feed(self, data: bytes) -> None:
        buf = self._buffer
        buf += data
        while len(buf) >= 5:
            compressed, length = struct.unpack_from(">BI", buf)
            if len(buf) < 5 + length:
                break
            if compressed:
                self.fail(GrpcError(Status.INTERNAL, "compressed message not asked for"))
                return
            self._messages.append(bytes(buf[5 : 5 + length]))
            del buf[: 5 + length]
        self._wake()

    def headers(self, headers: list[tuple[bytes, bytes]], *, trailers: bool) -> None:
        values = dict(headers)
        status = values.get(b":status")
        if status is not None and status != b"200":
            self.fail(GrpcError(Status.UNAVAILABLE, f"HTTP status {status.decode()}"))
            return
        grpc_status = values.get(b"grpc-status")
        if grpc_status is None:
            if trailers:
                self.fail(GrpcError(Status.INTERNAL, "the call ended without grpc-status"))
            return
        code = int(grpc_status) if grpc_status.isdigit() else Status.UNKNOWN
        if code != Status.OK:
            message = unquote(values.get(b"grpc-message", b"").decode("utf-8", "replace"))
            try:
                status_code = Status(code)
            except ValueError:
                status_code = Status.UNKNOWN
            self.fail(GrpcError(status_code, message))
        else:
            self.finished = True
            self._wake()

    def ended(self) -> None:
        if not self.finished and self.error is None:
            self.fail(GrpcError(Status.INTERNAL, "the call ended without grpc-status"))

    def fail(self, error: GrpcError) -> None:
        if self.error is None and not self.finished:
            self.error = error
        self._conn.streams.pop(self.id, None)
        self._wake()


class H2Connection(asyncio.Protocol):
    def __init__(self, authority: str, scheme: bytes) -> None:
        self.authority = authority.encode()
        self.scheme = scheme
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.transport: Any = None
        self.streams: dict[int, Stream] = {}
        self.closed = asyncio.get_running_loop().create_future()
        self.going_away = False
        self._window_waiters: list[asyncio.Future[None]] = []
        self._ping_acked: asyncio.Future[None] | None = None

    # -- asyncio.Protocol --------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.h2.initiate_connection()
        self.h2.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: WINDOW})
        self.h2.increment_flow_control_window(WINDOW)
        self.flush()

    def data_received(self, data: bytes) -> None:
        if self.closed.done():
            return
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            if self.h2.state_machine.state is h2.connection.ConnectionState.CLOSED:
                # frames after a GOAWAY in the same read: the server is going away
                error = GrpcError(Status.UNAVAILABLE, "the server closed the connection")
            else:
                error = GrpcError(Status.INTERNAL, f"HTTP/2 protocol error: {exc}")
            self._close(error)
            return
        for event in events:
            self._event(event)
            if self.closed.done():
                return
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self._close(GrpcError(Status.UNAVAILABLE, f"connection lost: {exc or 'closed'}"))

    def _event(self, event: Any) -> None:
        stream = self.streams.get(getattr(event, "stream_id", 0) or 0)
        if isinstance(event, h2.events.DataReceived):
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            if stream is not None and event.data:
                stream.feed(event.data)
        elif isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
            if stream is not None:
                stream.headers(
                    event.headers, trailers=isinstance(event, h2.events.TrailersReceived)
                )
        elif isinstance(event, h2.events.StreamEnded):
            if stream is not None:
                stream.ended()
                self.streams.pop(event.stream_id, None)
        elif isinstance(event, h2.events.StreamReset):
            if stream is not None:
                stream.fail(GrpcError(Status.UNAVAILABLE, f"stream reset ({event.error_code})"))
        elif isinstance(event, h2.events.WindowUpdated):
            waiters, self._window_waiters = self._window_waiters, []
            for w in waiters:
                if not w.done():
                    w.set_result(None)
        elif isinstance(event, h2.events.ConnectionTerminated):
            # h2 accepts no frame after GOAWAY, so calls cannot finish on this connection
            self.going_away = True
            code = getattr(event.error_code, "name", event.error_code)
            self._close(GrpcError(Status.UNAVAILABLE, f"the server closed the connection ({code})"))
        elif isinstance(event, h2.events.PingAckReceived):
            acked = self._ping_acked
            if acked is not None and not acked.done():
                acked.set_result(None)

    # -- used by streams ---------------------------------------------------------------
    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def open(self, path: str, timeout: float | None) -> Stream:
        if self.going_away or self.closed.done():
            raise GrpcError(Status.UNAVAILABLE, "the connection is closing")
        sid = self.h2.get_next_available_stream_id()
        headers = [
            (b":method", b"POST"),
            (b":scheme", self.scheme),
            (b":path", path.encode()),
            (b":authority", self.authority),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
            (b"user-agent", b"gossamer-sidecar"),
        ]
        if timeout is not None:
            headers.append((b"grpc-timeout", b"%dm" % max(1, int(timeout * 1000))))
        self.h2.send_headers(sid, headers)
        self.flush()
        stream = self.streams[sid] = Stream(self, sid)
        return stream

    async def send(self, sid: int, data: bytes, end: bool) -> None:
        view = memoryview(data)
        while True:
            if sid not in self.streams:
                raise GrpcError(Status.UNAVAILABLE, "the call is over")
            window = min(self.h2.local_flow_control_window(sid), self.h2.max_outbound_frame_size)
            if window <= 0 and view:
                waiter = asyncio.get_running_loop().create_future()
                self._window_waiters.append(waiter)
                await waiter
                continue
            chunk, view = view[:window], view[window:]
            self.h2.send_data(sid, chunk.tobytes(), end_stream=end and not view)
            self.flush()
            if not view:
                return

    def end_stream(self, sid: int) -> None:
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.h2.end_stream(sid)
            self.flush()

    def reset(self, sid: int) -> None:
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.h2.reset_stream(sid, 8)  # CANCEL
            self.flush()

    async def ping(self, timeout: float) -> bool:
        self._ping_acked = asyncio.get_running_loop().create_future()
        self.h2.ping(b"gossamer")
        self.flush()
        try:
            await asyncio.wait_for(asyncio.shield(self._ping_acked), timeout)
            return True
        except TimeoutError:
            return False

    def _close(self, error: GrpcError) -> None:
        for stream in list(self.streams.values()):
            stream.fail(error)
        self.streams.clear()
        if not self.closed.done():
            self.closed.set_result(None)
        for w in self._window_waiters:
            if not w.done():
                w.set_result(None)
        if self.transport is not None:
            self.transport.close()
