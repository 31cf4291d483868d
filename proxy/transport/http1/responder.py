"""Writing responses on a downstream HTTP/1.1 connection (a mixin of Http1Server).

- Known lengths stay; a body that is complete when writing starts goes out with a
  Content-Length in one write; bodies still arriving are chunked for HTTP/1.1 clients
  and close-delimited for HTTP/1.0 ones, written as they come while the transport's
  buffer has room (`pause_writing` makes the writer wait for `resume_writing`).
- The head says `connection: close` whenever the connection will close after this
  response (the request asked, its body was not read to the end, an upgrade was
  refused, the sidecar is draining) so clients do not reuse it.
- A 101 (or a 2xx to CONNECT) with a `Tunnel` is written and the two connections are
  spliced into a raw byte relay.
- 1xx responses from upstream (100 Continue) are relayed at once.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from gossamer.proxy.listeners.tcp import splice
from gossamer.proxy.service import Headers, Request, Response
from gossamer.proxy.transport.http1.body import BodyStream
from gossamer.proxy.transport.http1.conns import ConnectionTracker
from gossamer.proxy.transport.http1.wire import (
    CHUNKED,
    LAST_CHUNK,
    chunk,
    content_length,
    no_body,
    response_head,
)
from gossamer.proxy.transport.stream_timeouts import StreamClock


class ResponseWriter:
    transport: Any
    tracker: ConnectionTracker
    loop: asyncio.AbstractEventLoop
    _closed: bool
    _responding: bool
    _tail: bytes | None
    _write_paused: bool
    _drain_waiter: asyncio.Future[None] | None
    _streaming: tuple[BodyStream, bool, bool] | None = None  # (body, chunked, keep)
    _clock: StreamClock | None  # the served request's stream timing (stream_timeouts.py)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_drain()

    def _wake_drain(self) -> None:
        w = self._drain_waiter
        if w is not None:
            self._drain_waiter = None
            if not w.done():
                w.set_result(None)

    async def _drain(self) -> None:
        if self._write_paused and not self._closed:
            self._drain_waiter = self.loop.create_future()
            await self._drain_waiter

    def _write_simple(self, resp: Response, method: str) -> None:
        data = resp.body if isinstance(resp.body, bytes) else b""
        framing = b"" if no_body(resp.status, method) else content_length(len(data))
        parts = response_head(resp.status, resp.reason, resp.headers, framing)
        if data and framing:
            parts.append(data)
        self.transport.write(b"".join(parts))

    def _write_informational(self, status: int, reason: bytes, headers: Headers) -> None:
        if not self._closed and not self._responding:
            self.transport.write(b"".join(response_head(status, reason, headers, b"")))

    def _respond(self, req: Request, resp: Response) -> bool | None:
        """Write the response if it can be written at once (the usual case): True when
        the connection may serve another request; None when the body is still arriving
        and `_stream_body` must follow (its head is written)."""
        status = resp.status
        tunnel = resp.tunnel
        if tunnel is not None:
            if status == 101 or (req.method == "CONNECT" and 200 <= status < 300):
                framing = b""
                if status == 101 and req.upgrade:
                    framing = b"connection: upgrade\r\nupgrade: " + req.upgrade + b"\r\n"
                self.transport.write(
                    b"".join(response_head(status, resp.reason, resp.headers, framing))
                )
                self._closed = True
                self.tracker.discard(cast(Any, self))
                splice(
                    self.transport,
                    tunnel.transport,
                    self._tail or b"",
                    tunnel.pending,
                    b_eof=tunnel.eof,
                )
                return False
            if tunnel.close is not None:
                tunnel.close()
        reqbody = req.body
        keep = (
            req.keep_alive
            and req.upgrade is None
            and (reqbody is None or reqbody.stream.done)
            and not self.tracker.draining
        )
        body = resp.body
        streamed = not (body is None or isinstance(body, bytes) or no_body(status, req.method))
        first = None
        if streamed:
            assert isinstance(body, BodyStream)
            try:
                first = body.read_nowait()
            except Exception:
                # the upstream broke before the server took its response (a malformed
                # body in the same read as the head): as mid-body, the client's
                # connection ends (this used to kill the connection's task and leave
                # the client waiting)
                self.transport.abort()
                self._closed = True
                return False
            if first is not None and body.done:
                streamed = False  # the whole body is here: send it in one piece
            elif resp.content_length is None and req.http10:
                keep = False  # close-delimited
        # say so when this connection ends after the response
        conn = (
            b""
            if keep and not req.http10
            else (b"connection: keep-alive\r\n" if keep else b"connection: close\r\n")
        )
        if not streamed:
            if no_body(status, req.method):
                framing = b""
                if req.method == "HEAD" and resp.content_length is not None:
                    framing = content_length(resp.content_length)
                resp.discard()
                data = b""
            else:
                data = body if isinstance(body, bytes) else (first or b"")
                framing = content_length(len(data))
            parts = response_head(status, resp.reason, resp.headers, framing + conn)
            if data:
                parts.append(data)
            self.transport.write(b"".join(parts))
            return keep
        assert isinstance(body, BodyStream)
        if resp.content_length is not None:
            framing, chunked = content_length(resp.content_length), False
        elif req.http10:
            framing, chunked = b"", False
        else:
            framing, chunked = CHUNKED, True
        framing += conn
        parts = response_head(status, resp.reason, resp.headers, framing)
        if first:
            parts.append(chunk(first) if chunked else first)
        self.transport.write(b"".join(parts))
        self._streaming = (body, chunked, keep)
        return None

    async def _stream_body(self, resp: Response) -> bool:
        """Write the rest of a body as it arrives; True when the connection may stay."""
        assert self._streaming is not None
        body, chunked, keep = self._streaming
        self._streaming = None
        try:
            while True:
                if self._write_paused:
                    await self._drain()
                if self._closed:
                    resp.discard()
                    return False
                data = await body.read()
                if not data:
                    break
                self.transport.write(chunk(data) if chunked else data)
                if self._clock is not None:  # bytes sent: the stream is not idle
                    self._clock.active_at = self.loop.time()
        except Exception:
            # the upstream broke mid-body: the client sees a truncated response
            self.transport.abort()
            self._closed = True
            return False
        if chunked:
            self.transport.write(LAST_CHUNK)
        return keep
