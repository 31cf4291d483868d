"""The client side of HTTP/1.1: one exchange at a time on a pooled upstream connection.

Theory of operation:
- `send(request)` writes the head (and the body when it has fully arrived, with a
  Content-Length); a body still arriving is pumped by a task, re-framed with its
  Content-Length or chunked, pausing while the upstream's write buffer is full.
- The response resolves `send` when its head is parsed; its body streams into a
  `BodyStream` that pauses this connection's reading when the consumer lags.
- 1xx responses (100 Continue) go to `request.on_informational`; a 101 detaches the
  connection from HTTP and returns it as the response's `Tunnel`.
- When both the request and the response are complete, the exchange ends
  (`on_done`), and the connection goes back to its pool if both sides allow keep-alive.
  A response to HEAD ends at its head (llhttp cannot be told to skip the body), and
  such a connection is not reused. Bodies delimited by the connection closing end at EOF.
- A connection lost before the response head fails `send` with `UpstreamReset`; lost
  mid-body, the body stream fails. Cancelling `send` (a timeout) aborts the connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

import httptools

from gossamer.errors import RemoteProtocolError, UpstreamTimeout
from gossamer.proxy.service import (
    INF,
    REASONS,
    Headers,
    PerTryTimeout,
    Request,
    Response,
    Tunnel,
    UpstreamReset,
)
from gossamer.proxy.transport.http1.body import BodyReader, BodyStream
from gossamer.proxy.transport.http1.wire import (
    CHUNKED,
    LAST_CHUNK,
    chunk,
    content_length,
    parse_head,
    request_head,
)

MAX_RESPONSE_HEAD = 65536


def _noop() -> None:
    pass


class Owner(Protocol):
    """Who gets a connection back after a keep-alive exchange (its pool)."""

    def release(self, conn: Http1Client) -> None: ...

    def lost(self, conn: Http1Client) -> None: ...


class Http1Client(asyncio.Protocol):
    def __init__(self, owner: Owner | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        self.transport: Any = None
        self.parser = httptools.HttpResponseParser(self)
        self._owner = owner
        self.closed = False
        self.busy = False
        self.idle_since = 0.0
        self._req: Request | None = None
        self._fut: asyncio.Future[Response] | None = None
        self._stream: BodyStream | None = None
        self._on_done: Callable[[], None] = _noop
        self._pump: asyncio.Task[None] | None = None
        self._request_done = False
        self._response_done = False
        self._keep_alive = True
        self._until_close = False
        self._informational = False
        self._upgrade: Response | None = None
        self._tunnel: Tunnel | None = None
        self._resp: Response | None = None  # parsed head, answered at the end of the data
        self._parts: list[bytes] | None = None  # its body so far, while not yet answered
        self._raw: Headers = []
        self._head_size = 0
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None

    # -- connection --------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    @property
    def usable(self) -> bool:
        return not self.closed and not self.busy and not self.transport.is_closing()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.close()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        w = self._drain_waiter
        if w is not None:
            self._drain_waiter = None
            if not w.done():
                w.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._owner is not None:
            self._owner.lost(self)
        self.resume_writing()
        if self._tunnel is not None:
            self._tunnel.eof = True
            return
        if self._pump is not None:
            self._pump.cancel()
        fut = self._fut
        if fut is not None and not fut.done():
            fut.set_exception(UpstreamReset("the upstream closed the connection"))
        stream = self._stream
        if stream is not None and not stream.done:
            if self._until_close:
                stream.finish()
            else:
                stream.fail(UpstreamReset("the upstream closed the connection mid-response"))
        self._end()

    def eof_received(self) -> bool:
        if self._tunnel is not None:
            self._tunnel.eof = True
            return True
        if self._until_close and self._stream is not None:
            self._stream.finish()
        return False

    # -- sending -------------------------------------------------------------------------
    async def send(self, req: Request, on_done: Callable[[], None] = _noop) -> Response:
        """One exchange; the response returns when its head has arrived."""
        self.busy = True
        self._req = req
        self._on_done = on_done
        self._request_done = self._response_done = False
        self._keep_alive = True
        self._until_close = False
        self._stream = None
        self._resp = None
        self._parts = None
        fut: asyncio.Future[Response] = self.loop.create_future()
        self._fut = fut
        upgrade = b""
        if req.upgrade:
            upgrade = b"connection: upgrade\r\nupgrade: " + req.upgrade + b"\r\n"
        body = req.body
        if body is None:
            parts = request_head(req.method, req.path, req.authority, req.headers, upgrade)
            self.transport.write(b"".join(parts))
            self._request_done = True
        else:
            reader = body.reader()
            data = reader.read_all_nowait()
            if data is not None:
                framing = upgrade + content_length(len(data))
                parts = request_head(req.method, req.path, req.authority, req.headers, framing)
                parts.append(data)
                self.transport.write(b"".join(parts))
                self._request_done = True
            else:
                cl = body.content_length
                framing = upgrade + (CHUNKED if cl is None else content_length(cl))
                parts = request_head(req.method, req.path, req.authority, req.headers, framing)
                self.transport.write(b"".join(parts))
                self._pump = self.loop.create_task(self._pump_body(reader, cl is None))
        deadline = req.deadline if req.deadline <= req.try_deadline else req.try_deadline
        timer = None
        if deadline != INF:
            timer = self.loop.call_at(deadline, self._expire, fut, deadline != req.deadline)
        try:
            return await fut
        except BaseException:
            if not fut.done() or fut.cancelled():
                self.abort()
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def _expire(self, fut: asyncio.Future[Response], per_try: bool) -> None:
        if fut.done():
            return
        if per_try:
            fut.set_exception(PerTryTimeout("no response within the per-try timeout"))
        else:
            fut.set_exception(UpstreamTimeout("no response within the route's timeout"))
        self.abort()

    async def _pump_body(self, reader: BodyReader, chunked: bool) -> None:
        try:
            while True:
                data = await reader.read()
                if not data:
                    break
                if self.closed:
                    return
                self.transport.write(chunk(data) if chunked else data)
                if self._write_paused:
                    self._drain_waiter = self.loop.create_future()
                    await self._drain_waiter
            if chunked:
                self.transport.write(LAST_CHUNK)
        except asyncio.CancelledError:
            return
        except Exception:
            # the downstream body failed (client gone, malformed): abandon the exchange
            self.abort()
            return
        finally:
            self._pump = None
        self._request_done = True
        self._maybe_end()

    # -- parsing -------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self._tunnel is not None:
            self._tunnel.pending += data
            return
        try:
            self.parser.feed_data(data)
            resp = self._resp
            if resp is not None:
                # the head arrived in this piece of data: answer now, with the whole
                # body as bytes when it came along (the usual case), else a stream
                self._resp = None
                parts = self._parts
                if parts is not None:
                    self._parts = None
                    stream = self._stream = BodyStream(self.transport)
                    for part in parts:
                        stream.feed(part)
                    resp.body = stream
                fut = self._fut
                if fut is not None and not fut.done():
                    fut.set_result(resp)
        except httptools.HttpParserUpgrade as exc:
            resp = self._upgrade
            if resp is None:
                self._protocol_error("unexpected upgrade")
                return
            self._tunnel = resp.tunnel = Tunnel(self.transport, data[exc.args[0] :], self.abort)
            self.transport.pause_reading()
            self.busy = False
            if self._fut is not None and not self._fut.done():
                self._fut.set_result(resp)
            self._end()
        except httptools.HttpParserError as exc:
            self._protocol_error(str(exc))

    def _protocol_error(self, why: str) -> None:
        self._resp = None
        self._parts = None
        err = RemoteProtocolError(f"malformed response from upstream: {why}")
        if self._fut is not None and not self._fut.done():
            self._fut.set_exception(err)
        elif self._stream is not None:
            self._stream.fail(err)
        self.abort()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4
        if self._head_size > MAX_RESPONSE_HEAD:
            raise RemoteProtocolError("response head too large")
        self._raw.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        req = self._req
        if req is None or self._fut is None or self._fut.done():
            raise RemoteProtocolError("response without a request")
        head = parse_head(self._raw)
        self._raw = []
        self._head_size = 0
        reason = REASONS.get(status, b"")
        if status < 200 and status != 101:
            self._informational = True
            if req.on_informational is not None:
                req.on_informational(status, reason, head.headers)
            return
        self._keep_alive = self.parser.should_keep_alive() and not head.close
        if status == 101:
            self._upgrade = Response(status, head.headers, None, reason=reason)
            return
        method = req.method
        if status in (204, 304) or method == "HEAD":
            resp = Response(
                status, head.headers, None, reason=reason, content_length=head.content_length
            )
            if method == "HEAD":
                self._keep_alive = self._keep_alive and not head.content_length
                self._response_done = True
            self._fut.set_result(resp)
            if self._response_done:
                self._maybe_end()
            return
        self._until_close = head.content_length is None and not head.chunked
        if self._until_close:
            self._keep_alive = False
        self._parts = []
        self._resp = Response(
            status, head.headers, None, reason=reason, content_length=head.content_length
        )

    def on_body(self, data: bytes) -> None:
        parts = self._parts
        if parts is not None:
            parts.append(data)
        elif self._stream is not None:
            self._stream.feed(data)

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        parts = self._parts
        if parts is not None:
            self._parts = None
            resp = self._resp
            if resp is not None:
                resp.body = parts[0] if len(parts) == 1 else b"".join(parts)
        elif self._stream is not None:
            self._stream.finish()
        self._response_done = True
        self._maybe_end()

    # -- ending an exchange ----------------------------------------------------------------
    def _maybe_end(self) -> None:
        if not (self._response_done and self._request_done) or not self.busy:
            return
        self._end()
        if self._keep_alive and not self.closed and self._owner is not None:
            self._stream = None
            self._owner.release(self)
        else:
            self.close()

    def _end(self) -> None:
        self.busy = False
        self._req = None
        on_done, self._on_done = self._on_done, _noop
        on_done()
