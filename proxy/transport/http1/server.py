"""The server side of HTTP/1.1: read requests from a downstream connection, answer them.

Theory of operation:
- httptools parses; callbacks build a `Request` at the end of the head and feed its body
  stream. Requests are served one at a time in order (pipelining is allowed, responses
  keep the order) by one task per busy connection.
- Pipelining is bounded (`pipeline.py`): at most `limits.pipeline_depth` requests parsed
  and not yet answered; past that the unparsed bytes are held and reading pauses until
  an answer has gone out. Serving waits while the write buffer is over its high-water
  mark, so a client that does not read its answers stops being served (and read).
- Bad input never reaches a service: a malformed request gets 400, a head over
  `max_head_bytes` or `max_headers` 431, a target over `max_url_bytes` 414, and the
  connection closes. A client that has not finished its head `header_timeout` after
  starting it gets 408; an idle keep-alive connection closes after `idle_timeout`
  (deadlines are checked by the `ConnectionTracker` sweep, not per-request timers).
- A request being served is cut when it stalls (`stream_timeouts.py`, Envoy's
  `stream_idle_timeout` and `request_timeout`, from the listener's configuration):
  408 before its response has started, the connection aborted after; either way the
  service task is cancelled, which aborts the upstream exchange.
- Responses keep their Content-Length; bodies of unknown length are chunked for
  HTTP/1.1 clients and close-delimited for HTTP/1.0 ones. The connection stays open when
  both sides allow it and the request body was read to its end.
- `Expect: 100-continue` is forwarded; an upstream's 100 is relayed as it arrives.
- `Connection: upgrade` and CONNECT: bytes after the head are held until the response;
  a 101 (or a 2xx to CONNECT) with a `Tunnel` splices the two connections into a raw
  byte relay; any other answer closes the connection after it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httptools

from gossamer.contract.limits import H2_MAX_CONCURRENT_STREAMS
from gossamer.proxy.service import Headers, Request, Response, Service, error_response, generated
from gossamer.proxy.transport.http1.body import BodyStream, RequestBody
from gossamer.proxy.transport.http1.conns import ConnectionInfo, ConnectionTracker
from gossamer.proxy.transport.http1.pipeline import (
    H2_PRI,
    HEAD_END,
    PIPELINE_DEPTH,
    ReadGate,
    may_exceed,
)
from gossamer.proxy.transport.http1.responder import ResponseWriter
from gossamer.proxy.transport.http1.wire import parse_head
from gossamer.proxy.transport.stream_timeouts import (
    REASONS,
    StreamClock,
    TimeoutObserver,
    TimeoutSource,
    next_due,
)

log = logging.getLogger(__name__)
_INF = float("inf")
RECHECK = 1.0  # seconds until a request without a configuration yet is looked at again
METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")}


def _split_absolute(rest: bytes) -> tuple[str, bytes]:
    """`host[:port]` and the path of an absolute-form target after `http://`: the
    authority ends at the first `/`, `?` or `#` (`http://catalog?q=1` is catalog, path
    `/?q=1`), so a query string never ends up in the authority (routing, tap records)."""
    end = min((i for i in (rest.find(b"/"), rest.find(b"?"), rest.find(b"#")) if i >= 0),
              default=len(rest))  # fmt: skip
    authority, tail = rest[:end].decode("latin-1").lower(), rest[end:]
    if tail[:1] == b"/":
        return authority, tail
    if tail[:1] == b"?":
        return authority, b"/" + tail.split(b"#", 1)[0]
    return authority, b"/"  # nothing, or only a fragment


@dataclass(frozen=True, slots=True)
class ServerLimits:
    max_head_bytes: int = 65536
    max_headers: int = 100
    max_url_bytes: int = 16384
    header_timeout: float = 10.0
    idle_timeout: float = 120.0
    body_high_water: int = 262144
    replay_limit: int = 65536
    pipeline_depth: int = PIPELINE_DEPTH  # requests parsed and not yet answered
    h2_max_concurrent_streams: int = H2_MAX_CONCURRENT_STREAMS  # HTTP/2 servers (h2/abuse.py)


class _Reject(Exception):
    def __init__(self, status: int, code: bytes) -> None:
        super().__init__(code.decode())
        self.status = status
        self.code = code


def _reject_response(status: int, code: bytes) -> Response:
    return generated(status, code)


class Http1Server(ResponseWriter, asyncio.Protocol):
    # set on connections that may turn out to be HTTP/2 with prior knowledge: called
    # with the transport and the bytes received so far (from the connection preface)
    h2_handover: Callable[[Any, bytes], None] | None = None
    # the stream timeouts of a request (its listener's, from its snapshot); None: none
    stream_timeouts: TimeoutSource | None = None
    on_stream_timeout: TimeoutObserver | None = None  # (listener, reason): the metric

    def __init__(
        self,
        service: Service,
        info: ConnectionInfo,
        tracker: ConnectionTracker,
        limits: ServerLimits = ServerLimits(),
    ) -> None:
        self.service = service
        self.info = info
        self.tracker = tracker
        self.limits = limits
        self.loop = asyncio.get_running_loop()
        self.transport: Any = None
        self.gate: Any = None  # the transport as request bodies see it (ReadGate)
        self.parser = httptools.HttpRequestParser(self)
        self._clock: StreamClock | None = None  # the request being served, when timed
        self._stream_due = _INF  # when `_clock`'s request is to be looked at
        self.deadline = _INF
        self._queue: deque[Request | Response] = deque()
        self._task: asyncio.Task[None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._serving = False
        self._reading: BodyStream | None = None
        self._in_head = False
        self._url = b""
        self._raw: Headers = []
        self._head_size = 0
        self._fed = 0
        self._closed = False
        self._broken = False
        self._tail: bytes | None = None  # bytes after an upgrade/CONNECT head
        self._held: bytes | None = None  # not parsed yet: the pipeline is full
        self._body_left = 0  # what remains of a Content-Length request body
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._responding = False
        self.informational = self._write_informational

    # -- connection ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.gate = ReadGate(transport)
        self.tracker.add(self)
        self.deadline = self.loop.time() + self.limits.header_timeout

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self.tracker.discard(self)
        if self._reading is not None:
            self._reading.fail(ConnectionResetError("client disconnected"))
            self._reading = None
        if self._task is not None and not self._responding:
            self._task.cancel()
        self._wake()
        self._wake_drain()

    @property
    def deadline(self) -> float:
        """When the tracker's sweep must call `check_deadline`: the head, keep-alive or
        drain deadline, or the served request's stream check."""
        due = self._due
        return due if due < self._stream_due else self._stream_due

    @deadline.setter
    def deadline(self, value: float) -> None:
        self._due = value

    def check_deadline(self, now: float) -> None:
        """Called by the tracker's sweep."""
        if self._closed:
            return
        if now >= self._stream_due:
            self._check_stream(now)
            if self._closed:
                return
        if now < self._due:
            return
        if self._in_head or self._fed:
            self._reject(408, b"request-timeout")
        elif not self._serving:
            self.close()

    def _check_stream(self, now: float) -> None:
        """Cut the served request if it stalled, else note when to look again."""
        clock = self._clock
        source = self.stream_timeouts
        if clock is None or source is None:
            self._stream_due = _INF
            return
        timeouts = source(clock.req)
        if timeouts is None:
            self._stream_due = now + RECHECK
            return
        due, why = next_due(clock, timeouts)
        if now < due:
            self._stream_due = due
            return
        self._stream_due = _INF
        log.info(
            "cut a stalled request from %s (%s listener): %s",
            self.info.client, self.info.listener, why.decode(),
        )  # fmt: skip
        if self.on_stream_timeout is not None:
            self.on_stream_timeout(self.info.listener, REASONS[why])
        self._broken = True
        if self._reading is not None:
            self._reading.fail(TimeoutError(why.decode()))
            self._reading = None
        if clock.response is not None:  # mid-response: the client sees it cut short
            clock.response.discard()
            self.transport.abort()
            self._closed = True
            self.tracker.discard(self)
            return
        if self._task is not None:
            self._task.cancel()  # (aborts the upstream exchange: the app sees it end)
        resp = generated(408, why)
        resp.headers.append((b"connection", b"close"))
        self._write_simple(resp, "GET")
        self.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.tracker.discard(self)
            self.transport.close()
            self._wake()

    def shutdown(self) -> None:
        """Graceful stop: close now when idle, else after the current response."""
        if not self._serving and not self._in_head and not self._queue:
            self.close()
        else:
            self.deadline = min(self._due, self.loop.time() + self.limits.header_timeout)

    # -- parsing ---------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self._broken:
            return
        if self._clock is not None:
            self._clock.active_at = self.loop.time()
        if self._tail is not None:
            self._tail += data
            return
        if self._held is not None:  # (reading is paused: only a read in flight)
            self._held += data
            return
        room = self.limits.pipeline_depth - len(self._queue) - self._serving
        if may_exceed(data, room, self._body_left):
            self._feed_bounded(data)
        else:
            self._feed(data)

    def _feed_bounded(self, data: bytes) -> None:
        """Feed `data` in segments that can each begin at most one request; hold the rest
        when one more would begin past the pipeline's depth."""
        if self._task is None and self._fed == 0 and data.startswith(H2_PRI):
            self._feed(data)  # the HTTP/2 preface: handed over whole, nothing parsed
            return
        depth = self.limits.pipeline_depth
        queue = self._queue
        start, n = 0, len(data)
        while start < n:
            if self._reading is not None and self._body_left:
                end = min(n, start + self._body_left)  # the rest of a body
            else:
                if not self._in_head and len(queue) + self._serving >= depth:
                    self._held = data[start:]
                    self.gate.hold()
                    return
                end = data.find(HEAD_END, start)
                end = n if end < 0 else end + len(HEAD_END)
            self._feed(data[start:end])
            if self._broken or self._closed or self._tail is not None:
                if self._tail is not None:
                    self._tail += data[end:]
                return
            start = end

    def _release(self) -> None:
        """An answer went out: parse what was held (perhaps holding again), then read."""
        held = self._held
        assert held is not None
        self._held = None
        self.data_received(held)
        if self._held is None and not self._broken and self._tail is None:
            self.gate.release()

    def _feed(self, data: bytes) -> None:
        self._fed += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._tail = data[exc.args[0] :]
            self.transport.pause_reading()
        except httptools.HttpParserCallbackError as exc:
            ctx = exc.__context__
            if isinstance(ctx, _Reject):
                self._reject(ctx.status, ctx.code)
            else:
                log.error("request handling failed", exc_info=ctx)
                self._reject(500, b"internal-error")
        except httptools.HttpParserError as exc:
            if self.h2_handover is not None and self._is_h2_preface(exc, data):
                return
            self._reject(400, b"bad-request")
        else:
            if self._in_head and (
                self._fed > 2 * self.limits.max_head_bytes
                or len(self._raw) > self.limits.max_headers
            ):
                self._reject(431, b"headers-too-large")

    def _is_h2_preface(self, exc: Exception, data: bytes) -> bool:
        """llhttp stops at `PRI * HTTP/2.0\r\n\r\n` (the first 18 bytes of the HTTP/2
        preface): on a connection's first message, hand it over to HTTP/2 (costs
        nothing on the HTTP/1.1 path: this runs only when parsing failed)."""
        start = self._fed - len(data)  # where `data` starts in the connection's bytes
        if self._task is not None or start > 18 or str(exc) != "Pause on PRI/Upgrade":
            return False
        handover = self.h2_handover
        assert handover is not None
        self._closed = True
        self.tracker.discard(self)
        handover(self.transport, b"PRI * HTTP/2.0\r\n\r\n" + data[18 - start :])
        return True

    def on_message_begin(self) -> None:
        self._in_head = True
        self._url = b""
        self._raw = []
        self._head_size = 0
        self.deadline = self.loop.time() + self.limits.header_timeout

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self.limits.max_url_bytes:
            raise _Reject(414, b"uri-too-long")

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._in_head:  # (trailers are not forwarded)
            self._raw.append((name, value))

    def _head_too_large(self) -> bool:
        raw = self._raw
        limits = self.limits
        if len(raw) > limits.max_headers:
            return True
        # bytes fed so far bound the head from above: count exactly only when needed
        if self._fed <= limits.max_head_bytes:
            return False
        size = len(self._url) + sum(len(n) + len(v) + 4 for n, v in raw)
        return size > limits.max_head_bytes

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._head_too_large():
            raise _Reject(431, b"headers-too-large")
        self._fed = 0
        self.deadline = _INF
        parser = self.parser
        try:
            head = parse_head(self._raw)
        except ValueError:
            raise _Reject(400, b"bad-request") from None
        raw_method = parser.get_method()
        method = METHODS.get(raw_method) or raw_method.decode("ascii")
        url = self._url
        proxy_form = False
        if url[:1] == b"/":
            path = url
            authority = head.host.decode("latin-1").lower() if head.host is not None else ""
        elif method == "CONNECT":
            path = url
            authority = url.decode("latin-1").lower()
        elif url[:7].lower() == b"http://":
            authority, path = _split_absolute(url[7:])
            if "@" in authority:
                raise _Reject(400, b"bad-request")
            proxy_form = True
        elif url == b"*" and method == "OPTIONS":
            path = url
            authority = head.host.decode("latin-1").lower() if head.host is not None else ""
        else:
            raise _Reject(400, b"bad-request")
        body = None
        if head.chunked or (head.content_length or 0) > 0:
            self._body_left = head.content_length or 0
            stream = BodyStream(self.gate, self.limits.body_high_water)
            body = RequestBody(stream, self.limits.replay_limit, head.content_length)
            self._reading = stream
        req = Request(
            method,
            path,
            authority,
            head.headers,
            body,
            conn=self.info,
            keep_alive=parser.should_keep_alive() and not head.close,
            http10=parser.get_http_version() == "1.0",
            expect_continue=head.expect_continue,
            upgrade=head.upgrade if head.upgrade is not None or method != "CONNECT" else b"",
            start=self.loop.time(),
        )
        req.on_informational = self.informational
        req.proxy_form = proxy_form
        req.request_id = head.request_id
        req.forwarded = head.forwarded
        req.trace_headers = head.trace_headers
        req.traceparent = head.traceparent
        self._enqueue(req)

    def on_body(self, data: bytes) -> None:
        if self._body_left:
            self._body_left -= len(data)
        if self._reading is not None:
            self._reading.feed(data)

    def on_message_complete(self) -> None:
        self._body_left = 0
        if self._reading is not None:
            self._reading.finish()
            self._reading = None

    # -- serving -------------------------------------------------------------------------
    def _reject(self, status: int, code: bytes) -> None:
        self._broken = True
        self._in_head = False
        self.deadline = _INF
        if self._reading is not None:
            self._reading.fail(ConnectionAbortedError("malformed request"))
            self._reading = None
        self.transport.pause_reading()
        self._enqueue(_reject_response(status, code))

    def _enqueue(self, item: Request | Response) -> None:
        self._queue.append(item)
        if self._waiter is not None:
            self._wake()
        elif self._task is None:
            self._task = self.loop.create_task(self._run())

    def _wake(self) -> None:
        w = self._waiter
        if w is not None:
            self._waiter = None
            if not w.done():
                w.set_result(None)

    async def _run(self) -> None:
        """One task per connection serves its requests in order, parked when idle."""
        queue = self._queue
        try:
            depth = self.limits.pipeline_depth
            while not self._closed:
                if self._held is not None and len(queue) < depth:
                    self._release()
                if not queue:
                    self._waiter = self.loop.create_future()
                    await self._waiter
                    continue
                if self._write_paused:  # the client is not reading its answers
                    await self._drain()
                    continue
                item = queue.popleft()
                if isinstance(item, Response):
                    item.headers.append((b"connection", b"close"))
                    self._write_simple(item, "GET")
                    self.close()
                    return
                self._serving = True
                if self.stream_timeouts is not None:  # first looked at by the next sweep
                    self._clock = StreamClock(item, self.loop.time())
                    self._stream_due = self._clock.active_at
                try:
                    # (inline rather than a coroutine per request: this is the hot path)
                    req = item
                    try:
                        resp = await self.service(req)
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:
                        log.exception("service failed")
                        resp = error_response(exc)
                    if self._closed:
                        resp.discard()
                        continue
                    self._responding = True
                    if self._clock is not None:
                        self._clock.response = resp
                    try:
                        keep = self._respond(req, resp)
                        if keep is None:
                            keep = await self._stream_body(resp)
                    finally:
                        self._responding = False
                    self._finished(req, keep)
                finally:
                    self._serving = False
                    self._clock = None
                    self._stream_due = _INF
        except asyncio.CancelledError:
            pass
        finally:
            self._task = None
            self._waiter = None

    def _finished(self, req: Request, keep: bool) -> None:
        """After a response: keep the connection for the next request, or close it."""
        body = req.body
        if body is not None:
            if body.stream.done:
                body.stream.resume_producer()
            else:
                keep = False
        if not keep or self._closed or self.tracker.draining:
            self.close()
        elif not self._queue:
            self.deadline = self.loop.time() + self.limits.idle_timeout
