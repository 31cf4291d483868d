"""The server side of HTTP/2: downstream connections (the app's h2c on the outbound
listener, peers' h2 over mTLS on the inbound one), each stream served as a `Request`.

Theory of operation:
- Each stream becomes a `Request` (pseudo-headers -> method, path, authority) handed to
  the same service chain as HTTP/1.1 (routing, telemetry, retries, the upstream pool),
  in a task of its own; the request body streams in an `H2Body` whose reading returns
  flow-control credit to the client.
- gRPC: `request.grpc` is set from the content-type (2 when the call carries
  `grpc-timeout`: its deadline is the request's, and the upstream gets what remains).
  A response the sidecar generates for a gRPC call (no route, timeout, overflow...) is
  turned into a trailers-only gRPC response (HTTP 200, grpc-status, grpc-message,
  `x-gossamer-error`): a timeout becomes DEADLINE_EXCEEDED.
- The response: headers, the body as the client's window allows, then the trailers the
  upstream sent (or END_STREAM). The upstream breaking mid-body resets the stream
  (INTERNAL_ERROR); the client resetting a stream cancels its task, which resets the
  upstream stream (or aborts the HTTP/1.1 exchange).
- Drain (`shutdown`, from the ConnectionTracker): GOAWAY naming the last stream
  started; open streams finish, new ones are refused, the connection closes when the
  last one ends (the tracker aborts it at the drain deadline).
- Abuse (`abuse.py`): at most `max_concurrent_streams` streams whose tasks have not
  finished (more get REFUSED_STREAM); premature resets, RST_STREAM and PING/SETTINGS/
  empty-DATA floods and a client that stops reading close the connection with
  GOAWAY(ENHANCE_YOUR_CALM), a log line (at most one a second) and
  `gossamer_downstream_h2_abuse_closed_total{listener, reason}`. A stream the client
  resets leaves `_tasks` at once: a task cancelled before its first step never runs
  its `finally`.
- Stalled streams (`stream_timeouts.py`, Envoy's `stream_idle_timeout` and
  `request_timeout`): checked by the tracker's sweep through the connection's
  `deadline`; a stream cut before its response gets 408 (gRPC: a trailers-only
  answer) and RST_STREAM(NO_ERROR) if its body was still arriving, one cut after it
  RST_STREAM(CANCEL); its task is cancelled, which resets the upstream stream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace

import h2.errors
import h2.events

from gossamer.proxy.service import Request, Response, Service, error_response, generated
from gossamer.proxy.transport.h2 import grpc
from gossamer.proxy.transport.h2.abuse import (
    DEFAULT_H2_LIMITS,
    WRITE_BACKLOG,
    AbuseGuard,
    H2Limits,
    LogThrottle,
)
from gossamer.proxy.transport.h2.conn import (
    CANCEL,
    ENHANCE_YOUR_CALM,
    INTERNAL_ERROR,
    NO_ERROR,
    REFUSED_STREAM,
    H2Base,
    H2Body,
    Headers,
    StreamGone,
    forwardable,
)
from gossamer.proxy.transport.h2.request_head import check_request_head
from gossamer.proxy.transport.http1.body import BodyStream, RequestBody
from gossamer.proxy.transport.http1.conns import ConnectionInfo, ConnectionTracker
from gossamer.proxy.transport.http1.server import RECHECK, ServerLimits
from gossamer.proxy.transport.stream_timeouts import (
    REASONS,
    StreamClock,
    TimeoutObserver,
    TimeoutSource,
    next_due,
)

log = logging.getLogger(__name__)
_INF = float("inf")
NO_BODY = frozenset({204, 304})
DEFAULT_LIMITS = ServerLimits()
ABUSE_CLOSE_GRACE = 1.0  # seconds for GOAWAY to reach an abusive client before abort
_abuse_log = LogThrottle(1.0)


def grpc_error(resp: Response) -> Response:
    """A generated error response as the trailers-only answer a gRPC client expects."""
    code = resp.error or b"error"
    status = grpc.DEADLINE_EXCEEDED if code == b"timeout" else grpc.status_for_error(resp.status)
    message = resp.body.decode("utf-8", "replace").strip() if isinstance(resp.body, bytes) else ""
    headers = grpc.trailers_only(status, message or code.decode())[1:]
    headers.append((b"x-gossamer-error", code))
    out = Response(200, headers, None)
    out.error = code
    return out


def build_request(
    headers: Headers, body: RequestBody | None, info: ConnectionInfo, now: float
) -> Request | None:
    """A `Request` from an h2 header block (None when it is malformed: RFC 9113 8.3)."""
    if check_request_head(headers) is not None:
        return None
    method = path = authority = None
    plain: Headers = []
    request_id = forwarded = False
    host = None
    for k, v in headers:
        if k[:1] == b":":
            if k == b":method":
                method = v.decode("latin-1")
            elif k == b":path":
                path = v
            elif k == b":authority":
                authority = v
            continue
        if k == b"host":
            host = v
            continue
        if k == b"x-request-id":
            request_id = True
        elif k in (b"x-forwarded-for", b"x-forwarded-client-cert"):
            forwarded = True
        elif k == b"content-length":
            # the body carries it (RequestBody.content_length): an HTTP/1.1 upstream
            # writes its own framing, and two Content-Length lines are refused (400)
            continue
        plain.append((k, v))
    authority = authority if authority is not None else host
    if method is None or path is None or method == "CONNECT":
        return None
    req = Request(
        method,
        path,
        (authority or b"").decode("latin-1").lower(),
        forwardable(plain),
        body,
        conn=info,
        start=now,
    )
    req.request_id = request_id
    req.forwarded = forwarded
    if grpc.is_grpc(plain):
        req.grpc = 1
        for k, v in plain:
            if k == b"grpc-timeout":
                seconds = grpc.parse_timeout(v)
                if seconds is not None:
                    req.grpc = 2
                    req.deadline = now + seconds
                break
    return req


class H2Server(H2Base):
    # the stream timeouts of a request (its listener's, from its snapshot); None: none
    stream_timeouts: TimeoutSource | None = None
    on_stream_timeout: TimeoutObserver | None = None  # (listener, reason): the metric

    def __init__(
        self,
        service: Service,
        info: ConnectionInfo,
        tracker: ConnectionTracker,
        limits: ServerLimits = DEFAULT_LIMITS,
        *,
        h2_limits: H2Limits = DEFAULT_H2_LIMITS,
        on_abuse: Callable[[str, str], None] | None = None,
    ) -> None:
        streams = limits.h2_max_concurrent_streams  # --h2-max-concurrent-streams
        if h2_limits is DEFAULT_H2_LIMITS and streams != h2_limits.max_concurrent_streams:
            h2_limits = replace(h2_limits, max_concurrent_streams=streams)
        super().__init__(client_side=False, max_streams=h2_limits.max_concurrent_streams)
        self.service = service
        self.info = info
        self.tracker = tracker
        self.limits = limits
        self.max_streams = h2_limits.max_concurrent_streams
        self.max_write_backlog = h2_limits.max_write_backlog
        self.guard = AbuseGuard(h2_limits, self.loop.time)
        self.on_abuse = on_abuse  # (listener, reason): the metric
        self.deadline = _INF  # (Tracked) idle deadline, checked by the tracker's sweep
        self._bodies: dict[int, H2Body] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._starts: dict[int, float] = {}  # when each stream in `_tasks` started
        self._clocks: dict[int, StreamClock] = {}  # streams under stream timeouts

    # -- connection --------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.tracker.add(self)
        self._idle()
        if self.tracker.draining:
            self.shutdown()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.tracker.discard(self)
        for body in self._bodies.values():
            body.fail(ConnectionResetError("client disconnected"))
        self._bodies.clear()
        for task in self._tasks.values():
            task.cancel()

    def _idle(self) -> None:
        if not self._tasks:
            self.deadline = self.loop.time() + self.limits.idle_timeout

    def check_deadline(self, now: float) -> None:
        if not self._tasks:
            if now >= self.deadline:
                self.close()
            return
        soonest = self._check_streams(now)
        if self._tasks:
            self.deadline = soonest

    def _check_streams(self, now: float) -> float:
        """Cut the streams that stalled; when the next one may be due."""
        source = self.stream_timeouts
        soonest = _INF
        if source is None:
            return soonest
        for sid, clock in list(self._clocks.items()):
            timeouts = source(clock.req)
            if timeouts is None:
                due = now + RECHECK
            else:
                due, why = next_due(clock, timeouts)
                if now >= due:
                    self._cut(sid, clock, why)
                    continue
            soonest = min(soonest, due)
        return soonest

    def _cut(self, sid: int, clock: StreamClock, why: bytes) -> None:
        """End a stalled stream: 408 before its response, a reset after it."""
        del self._clocks[sid]
        log.info(
            "cut a stalled HTTP/2 stream from %s (%s listener): %s",
            self.info.client, self.info.listener, why.decode(),
        )  # fmt: skip
        if self.on_stream_timeout is not None:
            self.on_stream_timeout(self.info.listener, REASONS[why])
        body = self._bodies.pop(sid, None)
        if body is not None:
            body.fail(TimeoutError(why.decode()))
        if clock.response is None:
            resp = generated(408, why)
            if clock.req.grpc:
                resp = grpc_error(resp)
            try:
                self.send_headers(
                    sid, [(b":status", b"%d" % resp.status), *forwardable(resp.headers)], end=True
                )
            except StreamGone:
                pass
            if body is not None:  # the client may stop sending (RFC 9113 section 8.1)
                self.reset(sid, NO_ERROR)
        else:
            clock.response.discard()
            self.reset(sid, CANCEL)
        task = self._tasks.get(sid)
        if task is not None:
            task.cancel()  # (resets the upstream stream: the app sees the request end)

    @property
    def active(self) -> int:
        return len(self._tasks)

    def close(self) -> None:
        if not self.closed:
            self.tracker.discard(self)
        super().close()

    def abuse(self, reason: str) -> None:
        """Close an abusive connection: GOAWAY(ENHANCE_YOUR_CALM) naming the last stream
        started, then close (abort if the client has not taken it in a second)."""
        if self.closed:
            return
        if self.on_abuse is not None:
            self.on_abuse(self.info.listener, reason)
        suppressed = _abuse_log.allow(self.loop.time())
        if suppressed is not None:
            log.warning(
                "closing an abusive HTTP/2 connection from %s (%s listener, peer %s): %s "
                "after %d streams, %d of them reset early or refused (%d more since the "
                "last such line)",
                self.info.client, self.info.listener, self.info.peer_identity or "-", reason,
                self.guard.closed, self.guard.premature, suppressed,
            )  # fmt: skip
        self.goaway = True
        if reason != WRITE_BACKLOG:
            self.send_goaway(self._last_stream, ENHANCE_YOUR_CALM)
        transport = self.transport
        self.close()
        if transport is not None:
            self.loop.call_later(ABUSE_CLOSE_GRACE, transport.abort)

    def backlog_exceeded(self) -> None:
        self.abuse(WRITE_BACKLOG)

    # -- events ----------------------------------------------------------------------------
    def handle(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            self._request(event)
        elif isinstance(event, h2.events.DataReceived):
            sid = event.stream_id
            body = self._bodies.get(sid)
            padding = event.flow_controlled_length - len(event.data)
            if body is not None and event.data:
                body.feed(event.data)
                clock = self._clocks.get(sid)
                if clock is not None:
                    clock.active_at = self.loop.time()
            elif event.data:
                padding += len(event.data)
            elif event.stream_ended is None and (reason := self.guard.flood_frame()):
                self.abuse(reason)
                return
            if padding:
                self.ack(sid, padding)
        elif isinstance(event, h2.events.TrailersReceived):
            body = self._bodies.get(event.stream_id)
            if body is not None:
                body.trailers = forwardable(event.headers)
        elif isinstance(event, h2.events.StreamEnded):
            body = self._bodies.pop(event.stream_id, None)
            if body is not None:
                body.finish()
        elif isinstance(event, h2.events.StreamReset):
            self._reset(event)
        elif isinstance(event, h2.events.PingReceived | h2.events.UnknownFrameReceived):
            if reason := self.guard.flood_frame():
                self.abuse(reason)
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            if reason := self.guard.flood_frame():
                self.abuse(reason)
                return
            super().handle(event)
        else:
            super().handle(event)

    def _reset(self, event: h2.events.StreamReset) -> None:
        sid = event.stream_id
        self.stream_gone(sid)
        body = self._bodies.pop(sid, None)
        if body is not None:
            body.fail(ConnectionResetError("the client reset the stream"))
        reason = self.guard.reset_received() if event.remote_reset else None
        self._clocks.pop(sid, None)
        task = self._tasks.pop(sid, None)
        if task is not None:
            task.cancel()
            age = self.loop.time() - self._starts.pop(sid, 0.0)
            reason = reason or self.guard.stream_closed(self.guard.is_premature(age))
            self._stream_done()
        if reason:
            self.abuse(reason)

    def _request(self, event: h2.events.RequestReceived) -> None:
        sid = event.stream_id
        self._last_stream = max(self._last_stream, sid)
        if self.goaway:
            self.reset(sid, REFUSED_STREAM)
            return
        if len(self._tasks) >= self.max_streams:
            self.reset(sid, REFUSED_STREAM)
            if reason := self.guard.stream_closed(True):
                self.abuse(reason)
            return
        body = None
        if event.stream_ended is None:
            stream = H2Body(lambda n: self.ack(sid, n), lambda: self.reset(sid))
            self._bodies[sid] = stream
            length = None
            for k, v in event.headers:
                if k == b"content-length" and v.isdigit():
                    length = int(v)
            body = RequestBody(stream, self.limits.replay_limit, length)
        now = self.loop.time()
        req = build_request(event.headers, body, self.info, now)
        if req is None:
            self._bodies.pop(sid, None)
            self.reset(sid, h2.errors.ErrorCodes.PROTOCOL_ERROR)
            return
        if self.stream_timeouts is not None:  # first looked at by the next sweep
            self._clocks[sid] = StreamClock(req, now)
            self.deadline = now
        else:
            self.deadline = _INF
        self._starts[sid] = now
        self._tasks[sid] = self.loop.create_task(self._serve(sid, req))

    # -- answering -------------------------------------------------------------------------
    async def _serve(self, sid: int, req: Request) -> None:
        resp: Response | None = None
        try:
            try:
                resp = await self.service(req)
            except Exception as exc:
                log.exception("service failed")
                resp = error_response(exc)
            if req.grpc and resp.error is not None and resp.status != 200:
                resp = grpc_error(resp)
            await self._respond(sid, req, resp)
        except asyncio.CancelledError:
            if resp is not None:
                resp.discard()
        except StreamGone:
            if resp is not None:
                resp.discard()
        finally:
            self._clocks.pop(sid, None)
            if self._tasks.pop(sid, None) is not None:  # (not when reset by the client)
                self._starts.pop(sid, None)
                self.guard.stream_closed(False)
            body = self._bodies.pop(sid, None)
            if body is not None:  # the answer came before the request's end: the client
                # may stop sending it (RFC 9113 section 8.1), and the stream is closed
                body.fail(ConnectionAbortedError("the response ended first"))
                self.reset(sid, NO_ERROR)
            self._stream_done()

    def _stream_done(self) -> None:
        if self.goaway:
            self.close_if_done()
        else:
            self._idle()

    async def _respond(self, sid: int, req: Request, resp: Response) -> None:
        if resp.tunnel is not None and resp.tunnel.close is not None:
            resp.tunnel.close()
        clock = self._clocks.get(sid)
        if clock is not None:
            clock.response = resp
        status = resp.status
        headers: Headers = [(b":status", b"%d" % status), *forwardable(resp.headers)]
        body = resp.body
        if status in NO_BODY or req.method == "HEAD" or not body:
            if isinstance(body, BodyStream):
                resp.discard()
            self.send_headers(sid, headers, end=True)
            return
        if resp.content_length is not None:
            headers.append((b"content-length", b"%d" % resp.content_length))
        self.send_headers(sid, headers)
        if isinstance(body, bytes):
            await self.send_data(sid, body, end=True)
            return
        assert isinstance(body, BodyStream)
        try:
            while data := await body.read():
                await self.send_data(sid, data)
                if clock is not None:  # bytes sent: the stream is not idle
                    clock.active_at = self.loop.time()
        except StreamGone:
            raise
        except Exception:
            # the upstream broke mid-body: the client sees the stream reset
            self.reset(sid, INTERNAL_ERROR)
            return
        trailers = body.trailers if isinstance(body, H2Body) else None
        if trailers:
            self.send_headers(sid, trailers, end=True)
        else:
            await self.send_data(sid, b"", end=True)
