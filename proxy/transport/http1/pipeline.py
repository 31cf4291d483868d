"""Bounded HTTP/1.1 pipelining: read back-pressure on a downstream connection.

A client may send requests without waiting for the answers (pipelining); the server
answers them in order. Unbounded, a client that writes thousands of requests and never
reads makes the sidecar parse and queue all of them (and their responses): hundreds of
MB, and seconds of delay for everyone else. The bound:

- At most `PIPELINE_DEPTH` requests per connection are parsed and not yet answered (the
  one being served included). When a new request would begin past that, the bytes not
  yet parsed are held (`Http1Server._held`) and reading pauses (`transport.pause_reading`,
  so the kernel's socket buffer, then the client's, fill instead); reading resumes once
  an answer has been written and there is room again.
- The server also stops serving while the transport's write buffer is over its
  high-water mark (`pause_writing`): a client that does not read its answers holds at
  most one write buffer of them, not thousands.

httptools cannot stop parsing in the middle of a buffer, so the server decides before
feeding it: a request head needs at least `MIN_REQUEST` bytes and ends with CRLF CRLF
(llhttp accepts no bare LF), hence a buffer in which `HEAD_END` occurs fewer times than
there is room for cannot begin too many requests, and is fed whole (the usual case: one
request per read, no scan at all when the buffer is short). Otherwise it is fed in
segments, each ending just after a `HEAD_END` (or at the end of a Content-Length body),
so that at most one request begins in each and the bound can be checked in between.
"""

from __future__ import annotations

from typing import Any

from gossamer.contract import limits

PIPELINE_DEPTH = limits.PIPELINED_REQUESTS  # parsed, not yet answered (--max-pipelined-requests)
MIN_REQUEST = 18  # len(b"GET / HTTP/1.1\r\n\r\n"): the shortest request llhttp accepts
HEAD_END = b"\n\r\n"  # the end of every request head (and of a chunked body)
H2_PRI = b"PRI * HTTP/2.0\r\n\r\n"  # the start of the HTTP/2 preface


def may_exceed(data: bytes, room: int, body_left: int) -> bool:
    """Whether feeding `data` whole could complete more than `room` request heads.

    `body_left` is what remains of a Content-Length body being received: no head can
    end within it. A head begun in an earlier buffer may end here (its CRLF CRLF split
    across reads): one more than the `HEAD_END`s found."""
    if len(data) <= MIN_REQUEST * (room - 1):
        return False
    return data.count(HEAD_END, body_left) >= room


class ReadGate:
    """The transport as request bodies see it (a `BodyStream`'s producer).

    Reading is paused while any body stream is over its high-water mark or the pipeline
    is full: a body being read does not resume a connection the pipeline holds, nor the
    other way round."""

    __slots__ = ("_bodies", "_held", "transport")

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self._bodies = 0  # body streams that paused reading
        self._held = False  # the pipeline is full

    # -- BodyStream's producer interface --
    def pause_reading(self) -> None:
        self._bodies += 1
        self.transport.pause_reading()

    def resume_reading(self) -> None:
        self._bodies -= 1
        if not self._bodies and not self._held:
            self.transport.resume_reading()

    def abort(self) -> None:
        self.transport.abort()

    # -- the pipeline's --
    def hold(self) -> None:
        self._held = True
        self.transport.pause_reading()

    def release(self) -> None:
        self._held = False
        if not self._bodies:
            self.transport.resume_reading()
