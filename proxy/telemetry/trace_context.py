"""Trace context in HTTP headers: W3C Trace Context and B3 (single and multi), no I/O.

Specs: https://www.w3.org/TR/trace-context/ (`traceparent`, `tracestate`) and
https://github.com/openzipkin/b3-propagation (`b3: {trace}-{span}-{sampled}-{parent}`,
or `X-B3-TraceId`, `X-B3-SpanId`, `X-B3-ParentSpanId`, `X-B3-Sampled`, `X-B3-Flags`).

Headers are the data path's `list[tuple[bytes, bytes]]` with names in any case.
`Sampler` is the decision rule of an `OTEL_TRACES_SAMPLER` setting on such a context.
`extract` reads one context, preferring `traceparent`, then `b3`, then the X-B3 set; a
malformed header is ignored (as if absent), per both specs. A B3 context may carry no
sampling decision (`sampled is None`: the receiver decides) or only a decision
(`b3: 0`, ids zero). `inject` removes every trace header already present (so no stale
context of another format survives) and writes the given formats.
"""

from __future__ import annotations

import re

Headers = list[tuple[bytes, bytes]]

W3C = "tracecontext"
B3 = "b3"
B3_MULTI = "b3multi"
FORMATS = (W3C, B3, B3_MULTI)

_TRACEPARENT = b"traceparent"
_TRACESTATE = b"tracestate"
_B3 = b"b3"
_XB3_TRACE = b"x-b3-traceid"
_XB3_SPAN = b"x-b3-spanid"
_XB3_PARENT = b"x-b3-parentspanid"
_XB3_SAMPLED = b"x-b3-sampled"
_XB3_FLAGS = b"x-b3-flags"
TRACE_HEADERS = frozenset(
    {_TRACEPARENT, _TRACESTATE, _B3, _XB3_TRACE, _XB3_SPAN, _XB3_PARENT, _XB3_SAMPLED, _XB3_FLAGS}
)
# lengths of the names above: a cheap filter before lower-casing a header name
_LENGTHS = frozenset(len(n) for n in TRACE_HEADERS)
_HEX_DIGITS = b"0123456789abcdef"
# version-traceid-parentid-flags, and whatever a later version appends after a dash
_TRACEPARENT_RE = re.compile(
    rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?\Z", re.S
)


class TraceContext:
    """A remote span context (ids as ints; 0 means absent)."""

    __slots__ = ("fmt", "parent_id", "sampled", "span_id", "trace_id", "tracestate")

    def __init__(
        self,
        trace_id: int,
        span_id: int,
        sampled: bool | None,
        fmt: str = W3C,
        tracestate: str = "",
        parent_id: int = 0,
    ) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.sampled = sampled
        self.fmt = fmt
        self.tracestate = tracestate
        self.parent_id = parent_id

    @property
    def has_ids(self) -> bool:
        return self.trace_id != 0 and self.span_id != 0

    def __repr__(self) -> str:
        return (
            f"TraceContext({self.trace_id:032x}, {self.span_id:016x}, sampled={self.sampled}, "
            f"fmt={self.fmt})"
        )


def _hex_id(raw: bytes, lengths: tuple[int, ...]) -> int:
    """A non-zero lower-case hex id of an allowed length, else 0."""
    if len(raw) not in lengths or raw.translate(None, _HEX_DIGITS):
        return 0
    return int(raw, 16)


def parse_traceparent(value: bytes, tracestate: bytes = b"") -> TraceContext | None:
    match = _TRACEPARENT_RE.match(value.strip())
    if match is None:
        return None
    version, trace_hex, span_hex, flags, rest = match.groups()
    if version == b"ff" or (version == b"00" and rest):
        return None  # ff is forbidden; version 00 has exactly four fields
    trace_id = int(trace_hex, 16)
    span_id = int(span_hex, 16)
    if not trace_id or not span_id:
        return None
    sampled = bool(int(flags, 16) & 1)
    return TraceContext(trace_id, span_id, sampled, W3C, tracestate.decode("latin-1").strip())


_ZERO_TRACE = b"0" * 32
_ZERO_SPAN = b"0" * 16


# version 00 in its exact form (what sidecars send each other), the sampled flag off,
# ids not all zero: one regex match, nothing sliced or decoded
_UNSAMPLED_00 = re.compile(rb"00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f][02468ace]")


def is_unsampled_traceparent(value: bytes) -> bool:
    """True for a valid `traceparent` whose sampled flag is off (a cheap check for the
    common case: no ids are decoded, no context object is made)."""
    if _UNSAMPLED_00.fullmatch(value) is not None:  # (no length or prefix test first:
        return True  # each costs about a fifth of the match)
    match = _TRACEPARENT_RE.match(value.strip())
    if match is None:
        return False
    version, trace_hex, span_hex, flags, rest = match.groups()
    if version == b"ff" or (version == b"00" and rest):
        return False
    return trace_hex != _ZERO_TRACE and span_hex != _ZERO_SPAN and not int(flags, 16) & 1


def _b3_sampled(raw: bytes) -> bool | None:
    raw = raw.strip().lower()
    if raw in (b"1", b"d", b"true"):
        return True
    if raw in (b"0", b"false"):
        return False
    return None


def parse_b3_single(value: bytes) -> TraceContext | None:
    parts = value.strip().split(b"-")
    if len(parts) == 1:  # only a sampling decision
        sampled = _b3_sampled(parts[0])
        return None if sampled is None else TraceContext(0, 0, sampled, B3)
    trace_id = _hex_id(parts[0], (16, 32))
    span_id = _hex_id(parts[1], (16,))
    if not trace_id or not span_id or len(parts) > 4:
        return None
    sampled = None
    if len(parts) >= 3:
        if parts[2] not in (b"0", b"1", b"d"):
            return None
        sampled = parts[2] != b"0"
    parent = 0
    if len(parts) == 4:
        parent = _hex_id(parts[3], (16,))
        if not parent:
            return None
    return TraceContext(trace_id, span_id, sampled, B3, parent_id=parent)


def parse_b3_multi(found: dict[bytes, bytes]) -> TraceContext | None:
    sampled = _b3_sampled(found.get(_XB3_SAMPLED, b""))
    if found.get(_XB3_FLAGS, b"").strip() == b"1":
        sampled = True  # debug implies sampled
    trace_raw, span_raw = found.get(_XB3_TRACE), found.get(_XB3_SPAN)
    if trace_raw is None or span_raw is None:
        return None if sampled is None else TraceContext(0, 0, sampled, B3_MULTI)
    trace_id = _hex_id(trace_raw.strip().lower(), (16, 32))
    span_id = _hex_id(span_raw.strip().lower(), (16,))
    if not trace_id or not span_id:
        return None
    parent = _hex_id(found.get(_XB3_PARENT, b"").strip().lower(), (16,))
    return TraceContext(trace_id, span_id, sampled, B3_MULTI, parent_id=parent)


def find_trace_headers(headers: Headers) -> dict[bytes, bytes] | None:
    """The trace headers present (lower-case names), or None when there are none."""
    found: dict[bytes, bytes] | None = None
    lengths = _LENGTHS
    for name, value in headers:
        if len(name) in lengths:
            lowered = name.lower()
            if lowered in TRACE_HEADERS:
                if found is None:
                    found = {}
                if lowered == _TRACESTATE and lowered in found:
                    found[lowered] += b"," + value  # several tracestate headers combine
                else:
                    found.setdefault(lowered, value)
    return found


def extract(headers: Headers) -> TraceContext | None:
    """The request's trace context, or None when it carries none (or only bad ones)."""
    found = find_trace_headers(headers)
    if found is None:
        return None
    return extract_found(found)


def extract_found(found: dict[bytes, bytes]) -> TraceContext | None:
    ctx = None
    parent = found.get(_TRACEPARENT)
    if parent is not None:
        ctx = parse_traceparent(parent, found.get(_TRACESTATE, b""))
    if ctx is None and _B3 in found:
        ctx = parse_b3_single(found[_B3])
    if ctx is None:
        ctx = parse_b3_multi(found)
    return ctx


def format_traceparent(trace_id: int, span_id: int, sampled: bool) -> bytes:
    return b"00-%032x-%016x-%s" % (trace_id, span_id, b"01" if sampled else b"00")


def remove_trace_headers(headers: Headers) -> None:
    lengths = _LENGTHS
    headers[:] = [
        (n, v) for n, v in headers if len(n) not in lengths or n.lower() not in TRACE_HEADERS
    ]


def inject(
    headers: Headers,
    trace_id: int,
    span_id: int,
    sampled: bool,
    formats: tuple[str, ...] = (W3C,),
    *,
    tracestate: str = "",
    parent_id: int = 0,
    had_trace_headers: bool = True,
) -> None:
    """Write the context in each of `formats`, replacing any trace headers present
    (pass `had_trace_headers=False` when the request had none, to skip that scan)."""
    if had_trace_headers:
        remove_trace_headers(headers)
    flag = b"1" if sampled else b"0"
    for fmt in formats:
        if fmt == W3C:
            headers.append((_TRACEPARENT, format_traceparent(trace_id, span_id, sampled)))
            if tracestate:
                headers.append((_TRACESTATE, tracestate.encode("latin-1")))
        elif fmt == B3:
            value = b"%032x-%016x-%s" % (trace_id, span_id, flag)
            if parent_id:
                value += b"-%016x" % parent_id
            headers.append((_B3, value))
        elif fmt == B3_MULTI:
            headers.append((_XB3_TRACE, b"%032x" % trace_id))
            headers.append((_XB3_SPAN, b"%016x" % span_id))
            if parent_id:
                headers.append((_XB3_PARENT, b"%016x" % parent_id))
            headers.append((_XB3_SAMPLED, flag))


_MASK64 = (1 << 64) - 1


class Sampler:
    """The decision rule of one `OTEL_TRACES_SAMPLER` setting, without the SDK."""

    __slots__ = ("bound", "parent_based", "root_on")

    def __init__(self, kind: str, ratio: float) -> None:
        self.parent_based = kind.startswith("parentbased_")
        base = kind.removeprefix("parentbased_")
        if base == "always_on":
            ratio = 1.0
        elif base == "always_off":
            ratio = 0.0
        self.bound = round(min(max(ratio, 0.0), 1.0) * (1 << 64))
        self.root_on = self.bound > 0

    def decide(self, parent: TraceContext | None, trace_id: int) -> bool:
        if self.parent_based and parent is not None and parent.sampled is not None:
            return parent.sampled
        return (trace_id & _MASK64) < self.bound
