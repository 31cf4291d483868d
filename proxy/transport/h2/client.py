"""The client side of HTTP/2: one multiplexed upstream connection carrying many
exchanges at once (the peer sidecar over mTLS with ALPN h2, or the app over h2c).

Theory of operation:
- `send(request)` opens a stream: headers (pseudo-headers from the request; with
  `grpc-timeout` rewritten to the time left before the request's deadline), then the
  body, pumped by a task as the stream window allows when it has not fully arrived, and
  the request's trailers if it had any. It resolves with the response head; the body
  streams into an `H2Body` (trailers included), read credit flowing back to the
  upstream as the consumer reads. A response that ends with its headers (gRPC
  trailers-only) has no body.
- Cancelling `send`, a deadline passing, or the consumer discarding the body resets the
  stream (CANCEL) and leaves the connection to the other streams.
- The upstream resetting a stream: `UpstreamReset` (before the head, or in the body);
  REFUSED_STREAM is `StreamRefused`, safe to retry anywhere (nothing was processed).
- GOAWAY: no new streams on this connection; streams above the last one the upstream
  accepted fail with `StreamRefused`; the others finish, then the connection closes.
- The exchange ends (`on_done`: in-flight counts for the balancer) when the response
  has ended or the stream was reset.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

import h2.events

from gossamer.errors import UpstreamConnectError, UpstreamTimeout
from gossamer.proxy.service import INF, PerTryTimeout, Request, Response, UpstreamReset
from gossamer.proxy.transport.h2 import grpc
from gossamer.proxy.transport.h2.conn import (
    CANCEL,
    REFUSED_STREAM,
    H2Base,
    H2Body,
    Headers,
    StreamGone,
    forwardable,
)
from gossamer.proxy.transport.http1.body import BodyReader


class StreamRefused(UpstreamConnectError):
    """The upstream refused the stream (REFUSED_STREAM or GOAWAY): nothing was processed."""


class Owner(Protocol):
    """The pool: told when a stream ends, when the upstream sends GOAWAY, and once
    when the connection has closed."""

    def lost(self, conn: H2Client) -> None: ...

    def going_away(self, conn: H2Client) -> None: ...

    def stream_ended(self, conn: H2Client) -> None: ...


def _noop() -> None:
    pass


class _Exchange:
    __slots__ = ("body", "fut", "on_done", "pump", "req")

    def __init__(self, req: Request, fut: asyncio.Future[Response], on_done: Callable[[], None]):
        self.req = req
        self.fut = fut
        self.on_done = on_done
        self.body: H2Body | None = None
        self.pump: asyncio.Task[None] | None = None


class H2Client(H2Base):
    def __init__(self, owner: Owner | None = None, *, scheme: bytes = b"http") -> None:
        super().__init__(client_side=True)
        self._owner = owner
        self.scheme = scheme
        self.idle_since = 0.0
        self.streams: dict[int, _Exchange] = {}

    # -- state ------------------------------------------------------------------------
    @property
    def usable(self) -> bool:
        """May carry a new stream now."""
        return (
            not self.closed
            and not self.goaway
            and len(self.streams) < self.h2.remote_settings.max_concurrent_streams
            and not self.transport.is_closing()
        )

    @property
    def active(self) -> int:
        return len(self.streams)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._owner is not None:
            self._owner.lost(self)
            self._owner = None
        streams, self.streams = self.streams, {}
        for ex in streams.values():
            self._fail(ex, UpstreamReset("the upstream closed the connection"))

    def protocol_error(self, exc: Exception) -> None:
        streams, self.streams = self.streams, {}
        for ex in streams.values():
            self._fail(ex, UpstreamReset(f"HTTP/2 protocol error from upstream: {exc}"))
        self.abort()

    # -- sending ----------------------------------------------------------------------------
    async def send(self, req: Request, on_done: Callable[[], None] = _noop) -> Response:
        """One exchange on a new stream; returns when the response head has arrived."""
        if not self.usable:
            raise StreamRefused("the upstream connection is going away")
        conn = self.h2
        sid = conn.get_next_available_stream_id()
        fut: asyncio.Future[Response] = self.loop.create_future()
        ex = self.streams[sid] = _Exchange(req, fut, on_done)
        headers: Headers = [
            (b":method", req.method.encode()),
            (b":scheme", self.scheme),
            (b":authority", req.authority.encode()),
            (b":path", req.path),
        ]
        if req.grpc == 2 and req.deadline != INF:
            left = grpc.format_timeout(req.deadline - self.loop.time())
            headers += [(k, left if k == b"grpc-timeout" else v) for k, v in req.headers]
        else:
            headers += forwardable(req.headers)
        body = req.body
        if body is None:
            self.send_headers(sid, headers, end=True)
        else:
            reader = body.reader()
            data = reader.read_all_nowait()
            trailers = getattr(body.stream, "trailers", None)
            self.send_headers(sid, headers)
            if (
                data is not None
                and not trailers
                and len(data) <= conn.local_flow_control_window(sid)
            ):
                conn.send_data(sid, data, end_stream=True)
                self.flush()
            else:
                ex.pump = self.loop.create_task(self._pump(sid, reader, data))
        deadline = req.deadline if req.deadline <= req.try_deadline else req.try_deadline
        timer = None
        if deadline != INF:
            timer = self.loop.call_at(deadline, self._expire, sid, deadline != req.deadline)
        try:
            return await fut
        except BaseException:
            if not fut.done() or fut.cancelled():
                self._cancel(sid)
            raise
        finally:
            if timer is not None:
                timer.cancel()

    async def _pump(self, sid: int, reader: BodyReader, first: bytes | None) -> None:
        try:
            if first is not None:
                await self.send_data(sid, first)
            else:
                while data := await reader.read():
                    await self.send_data(sid, data)
            ex = self.streams.get(sid)
            trailers = getattr(ex.req.body.stream, "trailers", None) if ex and ex.req.body else None
            if trailers:
                self.send_headers(sid, trailers, end=True)
            else:
                await self.send_data(sid, b"", end=True)
        except asyncio.CancelledError:
            return
        except StreamGone:
            return
        except Exception:
            # the downstream body failed (client gone): abandon this stream only
            self._cancel(sid)
        finally:
            ex = self.streams.get(sid)
            if ex is not None:
                ex.pump = None

    def _expire(self, sid: int, per_try: bool) -> None:
        ex = self.streams.get(sid)
        if ex is None or ex.fut.done():
            return
        if per_try:
            ex.fut.set_exception(PerTryTimeout("no response within the per-try timeout"))
        else:
            ex.fut.set_exception(UpstreamTimeout("no response within the deadline"))
        self._cancel(sid)

    def _cancel(self, sid: int) -> None:
        ex = self.streams.pop(sid, None)
        self.reset(sid, CANCEL)
        if ex is not None:
            self._fail(ex, UpstreamReset("the exchange was cancelled"))
        self._stream_ended()

    def _fail(self, ex: _Exchange, exc: BaseException) -> None:
        if ex.pump is not None:
            ex.pump.cancel()
        if not ex.fut.done():
            ex.fut.set_exception(exc)
            ex.fut.exception()
        elif ex.body is not None and not ex.body.done:
            ex.body.fail(exc)
        on_done, ex.on_done = ex.on_done, _noop
        on_done()

    def _finish(self, sid: int) -> None:
        ex = self.streams.pop(sid, None)
        if ex is None:
            return
        if ex.pump is not None:  # the response ended first: the rest is not wanted
            ex.pump.cancel()
            self.reset(sid, CANCEL)
        on_done, ex.on_done = ex.on_done, _noop
        on_done()
        self._stream_ended()

    def _stream_ended(self) -> None:
        if self.goaway:
            self.close_if_done()
        elif self._owner is not None:
            self._owner.stream_ended(self)

    # -- events -----------------------------------------------------------------------------
    def handle(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.ResponseReceived):
            self._response(event)
        elif isinstance(event, h2.events.DataReceived):
            sid = event.stream_id
            ex = self.streams.get(sid)
            padding = event.flow_controlled_length - len(event.data)
            if ex is not None and ex.body is not None and event.data:
                ex.body.feed(event.data)
            elif event.data:
                padding += len(event.data)
            if padding:
                self.ack(sid, padding)
        elif isinstance(event, h2.events.TrailersReceived):
            ex = self.streams.get(event.stream_id)
            if ex is not None and ex.body is not None:
                ex.body.trailers = forwardable(event.headers)
        elif isinstance(event, h2.events.StreamEnded):
            ex = self.streams.get(event.stream_id)
            if ex is not None:
                if ex.body is not None:
                    ex.body.finish()
                self._finish(event.stream_id)
        elif isinstance(event, h2.events.StreamReset):
            sid = event.stream_id
            self.stream_gone(sid)
            ex = self.streams.pop(sid, None)
            if ex is not None:
                if event.error_code == REFUSED_STREAM and not ex.fut.done():
                    err: Exception = StreamRefused("the upstream refused the stream")
                else:
                    err = UpstreamReset(f"the upstream reset the stream ({event.error_code!s})")
                self._fail(ex, err)
                self._stream_ended()
        elif isinstance(event, h2.events.InformationalResponseReceived):
            pass
        else:
            super().handle(event)

    def _response(self, event: h2.events.ResponseReceived) -> None:
        sid = event.stream_id
        ex = self.streams.get(sid)
        if ex is None or ex.fut.done():
            return
        status = 0
        for k, v in event.headers:
            if k == b":status":
                status = int(v) if v.isdigit() else 0
                break
        content_length = None
        headers: Headers = []
        for k, v in event.headers:
            if k == b"content-length" and v.isdigit():
                content_length = int(v)
            elif k[:1] != b":":
                headers.append((k, v))
        headers = forwardable(headers)
        if event.stream_ended is not None:
            ex.fut.set_result(Response(status, headers, None, content_length=0))
            return
        ex.body = H2Body(lambda n: self.ack(sid, n), lambda: self._cancel(sid))
        ex.fut.set_result(Response(status, headers, ex.body, content_length=content_length))

    def goaway_received(self, last_stream_id: int) -> None:
        for sid in [s for s in self.streams if s > last_stream_id]:
            ex = self.streams.pop(sid)
            self._fail(ex, StreamRefused("the upstream is going away (GOAWAY)"))
        if self._owner is not None:
            self._owner.going_away(self)
