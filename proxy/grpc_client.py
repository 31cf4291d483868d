"""A small gRPC client over HTTP/2 (h2, sans-IO) for the sidecar's calls to the control
plane: unary Certify, and the bidirectional ADS and registration streams.

Why not grpcio here: memory. The sidecar must stay under 60 MB RSS; importing grpcio and
opening one channel costs about 13 MB (its C core, mostly), which this client replaces
with h2 (under 1 MB, already a dependency). The control plane stays on grpcio, and the
e2e tests run this client against it.

Theory of operation (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md):
- One TLS connection (ALPN h2) per `Channel`, opened on first use; each call is an
  HTTP/2 stream: POST `/<service>/<method>`, `content-type: application/grpc`,
  `te: trailers`, optional `grpc-timeout`. Messages are length-prefixed (1 byte
  compression flag, 4 bytes big-endian length); compression is never asked for.
- The call ends with trailers carrying `grpc-status` (and `grpc-message`), or with
  trailers only; a stream reset or a lost connection is UNAVAILABLE (CANCELLED when we
  cancelled it).
- Flow control: received data is acknowledged as soon as it is buffered (messages are
  small and consumed at once); sends wait for window when the peer's is exhausted.
- GOAWAY: the connection ends (h2 processes no frame after it), its calls fail with
  UNAVAILABLE, and the next call opens a new connection.
- Keepalive: a PING every `keepalive` seconds; no answer within `keepalive_timeout`
  closes the connection, so a vanished control plane fails the streams instead of
  leaving them hanging. (The control plane tolerates pings every 10 s or slower.)
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
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


class Status(IntEnum):
    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


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

    def __init__(self, conn: _Connection, stream_id: int) -> None:
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


class _Connection(asyncio.Protocol):
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


class Channel:
    """A connection to one gRPC server; reconnects lazily after a failure. `context`
    None: plaintext HTTP/2 with prior knowledge (a local trace collector)."""

    def __init__(
        self,
        host: str,
        port: int,
        context: ssl.SSLContext | None,
        server_hostname: str,
        *,
        connect_timeout: float = 5.0,
        keepalive: float = 30.0,
        keepalive_timeout: float = 10.0,
    ) -> None:
        self.host, self.port = host, port
        self.context = context
        self.server_hostname = server_hostname
        self.connect_timeout = connect_timeout
        self.keepalive = keepalive
        self.keepalive_timeout = keepalive_timeout
        self._conn: _Connection | None = None
        self._connecting: asyncio.Lock | None = None
        self._keepalive_task: asyncio.Task[None] | None = None

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    async def _connection(self) -> _Connection:
        conn = self._conn
        if conn is not None and not conn.closed.done() and not conn.going_away:
            return conn
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            conn = self._conn
            if conn is not None and not conn.closed.done() and not conn.going_away:
                return conn
            loop = asyncio.get_running_loop()
            try:
                async with asyncio.timeout(self.connect_timeout):
                    tls = self.context is not None
                    _, conn = await loop.create_connection(
                        lambda: _Connection(self.server_hostname, b"https" if tls else b"http"),
                        self.host,
                        self.port,
                        ssl=self.context,
                        server_hostname=self.server_hostname if tls else None,
                    )
            except TimeoutError:
                raise GrpcError(Status.UNAVAILABLE, f"{self.target}: connect timed out") from None
            except ssl.SSLError as exc:
                raise GrpcError(
                    Status.UNAVAILABLE, f"{self.target}: TLS: {exc.reason or exc}"
                ) from None
            except OSError as exc:
                raise GrpcError(
                    Status.UNAVAILABLE, f"{self.target}: {exc.strerror or exc}"
                ) from None
            self._conn = conn
            if self.keepalive and (self._keepalive_task is None or self._keepalive_task.done()):
                self._keepalive_task = loop.create_task(self._keep_alive())
            return conn

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(self.keepalive)
            conn = self._conn
            if conn is None or conn.closed.done():
                continue
            if not await conn.ping(self.keepalive_timeout):
                conn._close(GrpcError(Status.UNAVAILABLE, "no answer to keepalive ping"))

    async def stream(self, path: str, *, timeout: float | None = None) -> Stream:
        """Open a call (streaming either way); messages are serialised protobufs."""
        conn = await self._connection()
        return conn.open(path, timeout)

    async def unary(self, path: str, request: bytes, *, timeout: float = 10.0) -> bytes:
        try:
            async with asyncio.timeout(timeout):
                stream = await self.stream(path, timeout=timeout)
                try:
                    await stream.send(request, end=True)
                    reply = await stream.recv()
                    if reply is None:
                        raise GrpcError(Status.INTERNAL, "no response message")
                    while await stream.recv() is not None:
                        pass  # the trailers (status)
                    return reply
                finally:
                    stream.cancel()
        except TimeoutError:
            raise GrpcError(Status.DEADLINE_EXCEEDED, f"no answer within {timeout:g}s") from None

    async def close(self) -> None:
        if self._keepalive_task is not None:
            self._keepalive_task.cancel()
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(h2.exceptions.ProtocolError):
                conn.h2.close_connection()
                conn.flush()
            conn._close(GrpcError(Status.CANCELLED, "channel closed"))

    async def __aenter__(self) -> Channel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
