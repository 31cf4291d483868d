"""OTLP trace export requests written straight from `SpanRecord`s (protobuf wire format).

The export thread used to turn each record into an SDK `ReadableSpan` and hand the batch
to the OpenTelemetry OTLP encoder, which builds protobuf objects per span, attribute
and value: about 50 us per span (timed on this project's 2-core VM). That thread's CPU
and its hold on the GIL come out of what the event loop could use. Writing the few
message types a sidecar's spans use directly takes about 14 us for a span with a
dozen attributes; span attributes with str or int values that repeat (most do) are
kept encoded in bounded tables, which halves that (callgrind: 91k -> 42k instructions
per span).

Messages written (opentelemetry/proto, trace v1; unset fields omitted, as proto3 does):
  ExportTraceServiceRequest { 1 resource_spans }
  ResourceSpans  { 1 resource { 1 attributes }, 2 scope_spans }
  ScopeSpans     { 1 scope { 1 name }, 2 spans }
  Span           { 1 trace_id, 2 span_id, 3 trace_state, 4 parent_span_id, 5 name,
                   6 kind, 7 start_time_unix_nano, 8 end_time_unix_nano, 9 attributes,
                   11 events, 15 status { 3 code }, 16 flags }
  Event          { 1 time_unix_nano, 2 name, 3 attributes }
  KeyValue { 1 key, 2 value }; AnyValue { 1 string, 2 bool, 3 int, 4 double,
                   5 array { 1 values }, 6 kvlist { 1 values }, 7 bytes }
The result is what the SDK's encoder makes of the same span (a unit test parses both
with the protobuf classes and compares them).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gossamer.proxy.telemetry.span_record import SCOPE, SpanRecord, trace_state

_U64 = (1 << 64) - 1
_ONE_BYTE = [bytes((i,)) for i in range(128)]
_fixed64 = struct.Struct("<Q").pack
_double = struct.Struct("<d").pack
_fixed32 = struct.Struct("<I").pack
# Span.status: present in every span, as the SDK writes it (code 0 unset, 2 error)
_STATUS_UNSET = b"\x7a\x00"
_STATUS_ERROR = b"\x7a\x02\x18\x02"
# Span.flags (field 16, fixed32): "is the parent remote" is known (0x100); it is (0x200)
_FLAGS_ROOT = b"\x85\x01" + _fixed32(0x100)
_FLAGS_REMOTE_PARENT = b"\x85\x01" + _fixed32(0x300)
_FLAGS_LOCAL_PARENT = _FLAGS_ROOT  # an attempt span: its parent is in this sidecar
_KEYS: dict[str, bytes] = {}  # attribute key -> its encoded KeyValue.key field
_MAX_KEYS = 512
# a span attribute (str or int value) -> its encoded Span.attributes field: most repeat
# from span to span (method, scheme, server, port, route, status, peer identity), and
# one dict lookup replaces about eight Python calls. One table per value type, so that
# 1, True and 1.0 (equal as keys) never share an entry; bounded, and url.path (often
# unique per request) is not kept
_STR_ATTRS: dict[tuple[str, str], bytes] = {}
_INT_ATTRS: dict[tuple[str, int], bytes] = {}
_MAX_ATTRS = 2048
_NOT_KEPT = frozenset({"url.path", "url.query", "url.full"})


def varint(n: int) -> bytes:
    """A non-negative integer as a protobuf varint."""
    if n < 0x80:
        return _ONE_BYTE[n]
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    n = len(payload)
    return tag + (_ONE_BYTE[n] if n < 0x80 else varint(n)) + payload


def any_value(value: Any) -> bytes:
    """AnyValue for an attribute value (what the SDK encoder accepts; other types as
    their str)."""
    if isinstance(value, str):
        return field(b"\x0a", value.encode())
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        return b"\x18" + varint(value & _U64)  # int64: two's complement, 10 bytes if < 0
    if isinstance(value, float):
        return b"\x21" + _double(value)
    if isinstance(value, bytes):
        return field(b"\x3a", value)
    if value is None:
        return b""
    if isinstance(value, Mapping):
        pairs = b"".join(field(b"\x0a", key_value(str(k), v)) for k, v in value.items())
        return field(b"\x32", pairs)
    if isinstance(value, Sequence):
        return field(b"\x2a", b"".join(field(b"\x0a", any_value(v)) for v in value))
    return field(b"\x0a", str(value).encode())


def key_value(key: str, value: Any) -> bytes:
    prefix = _KEYS.get(key)
    if prefix is None:
        prefix = field(b"\x0a", key.encode())
        if len(_KEYS) < _MAX_KEYS:  # the keys a sidecar uses are few; stay bounded
            _KEYS[key] = prefix
    return prefix + field(b"\x12", any_value(value))


def attributes(tag: bytes, attrs: Mapping[str, Any]) -> bytes:
    """Repeated KeyValue fields under `tag`."""
    return b"".join([field(tag, key_value(k, v)) for k, v in attrs.items()])


def span_attributes(attrs: Mapping[str, Any]) -> bytes:
    """Span.attributes fields (tag 9), each common one encoded once."""
    parts = []
    for key, value in attrs.items():
        kind = type(value)
        table = _STR_ATTRS if kind is str else _INT_ATTRS if kind is int else None
        if table is None or key in _NOT_KEPT:
            parts.append(field(b"\x4a", key_value(key, value)))
            continue
        encoded = table.get((key, value))
        if encoded is None:
            encoded = field(b"\x4a", key_value(key, value))
            if len(table) < _MAX_ATTRS:
                table[key, value] = encoded
        parts.append(encoded)
    return b"".join(parts)


def encode_span(rec: SpanRecord) -> bytes:
    """One Span message."""
    parts = [b"\x0a\x10", rec.trace_id.to_bytes(16, "big"), b"\x12\x08",
             rec.span_id.to_bytes(8, "big")]  # fmt: skip
    if rec.tracestate:
        state = trace_state(rec.tracestate).to_header()  # normalised as the SDK would
        if state:
            parts.append(field(b"\x1a", state.encode()))
    if rec.parent_id:
        parts += (b"\x22\x08", rec.parent_id.to_bytes(8, "big"))
    parts += (
        field(b"\x2a", rec.name.encode()),
        b"\x30",
        varint(rec.kind.value + 1),  # SDK SpanKind INTERNAL=0 ..; OTLP SPAN_KIND_INTERNAL=1 ..
        b"\x39",
        _fixed64(rec.start_ns),
        b"\x41",
        _fixed64(rec.end_ns),
        span_attributes(rec.attributes),
    )
    if rec.events:
        parts += [
            field(
                b"\x5a", b"\x09" + _fixed64(t) + field(b"\x12", n.encode()) + attributes(b"\x1a", a)
            )
            for t, n, a in rec.events
        ]
    parts += (
        _STATUS_ERROR if rec.failed else _STATUS_UNSET,
        (_FLAGS_LOCAL_PARENT if rec.local_parent else _FLAGS_REMOTE_PARENT)
        if rec.parent_id
        else _FLAGS_ROOT,
    )
    return b"".join(parts)


class ExportRequestWriter:
    """ExportTraceServiceRequest bytes for a batch of records of one sidecar (one
    resource, one instrumentation scope; both encoded once)."""

    def __init__(self, resource_attributes: Mapping[str, Any], scope: str = SCOPE) -> None:
        self._resource = field(b"\x0a", attributes(b"\x0a", resource_attributes))
        self._scope = field(b"\x0a", field(b"\x0a", scope.encode()))

    def request(self, records: Iterable[SpanRecord]) -> bytes:
        spans = b"".join([field(b"\x12", encode_span(rec)) for rec in records])
        resource_spans = self._resource + field(b"\x12", self._scope + spans)
        return field(b"\x0a", resource_spans)
