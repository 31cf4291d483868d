"""W3C Trace Context and B3 parsing and writing."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gossamer.proxy.telemetry import trace_context as tc

TID = 0x0AF7651916CD43DD8448EB211C80319C
SID = 0xB7AD6B7169203331
TP = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_traceparent_round_trip_and_flags():
    ctx = tc.extract([(b"Traceparent", TP), (b"TraceState", b"congo=t61rcWkgMzE")])
    assert ctx is not None
    assert (ctx.trace_id, ctx.span_id, ctx.sampled, ctx.fmt) == (TID, SID, True, tc.W3C)
    assert ctx.tracestate == "congo=t61rcWkgMzE"
    assert tc.format_traceparent(TID, SID, True) == TP
    off = tc.extract([(b"traceparent", TP[:-2] + b"00")])
    assert off is not None and off.sampled is False


def test_several_tracestate_headers_combine():
    ctx = tc.extract([(b"traceparent", TP), (b"tracestate", b"a=1"), (b"tracestate", b"b=2")])
    assert ctx is not None and ctx.tracestate == "a=1,b=2"


def test_bad_traceparents_are_ignored():
    for bad in (
        b"00-00000000000000000000000000000000-b7ad6b7169203331-01",  # zero trace id
        b"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # zero span id
        b"ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # forbidden version
        b"00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",  # upper case
        b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",  # v00 too long
        b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333-01",
        b"garbage",
    ):
        assert tc.extract([(b"traceparent", bad)]) is None, bad
    # a future version may carry more fields
    future = b"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what-ever"
    ctx = tc.extract([(b"traceparent", future)])
    assert ctx is not None and ctx.trace_id == TID


def test_b3_single_forms():
    ctx = tc.extract(
        [(b"b3", b"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90")]
    )
    assert ctx is not None and ctx.fmt == tc.B3
    assert ctx.trace_id == 0x80F198EE56343BA864FE8B2A57D3EFF7 and ctx.sampled is True
    assert ctx.parent_id == 0x05E3AC9A4F6E3B90
    short = tc.extract([(b"B3", b"64fe8b2a57d3eff7-e457b5a2e4d86bd1")])  # 64-bit, deferred
    assert short is not None and short.trace_id == 0x64FE8B2A57D3EFF7 and short.sampled is None
    debug = tc.extract([(b"b3", b"64fe8b2a57d3eff7-e457b5a2e4d86bd1-d")])
    assert debug is not None and debug.sampled is True
    deny = tc.extract([(b"b3", b"0")])
    assert deny is not None and not deny.has_ids and deny.sampled is False
    for bad in (b"xyz-e457b5a2e4d86bd1", b"64fe8b2a57d3eff7-e457b5a2e4d86bd1-7", b"1-2-3-4-5"):
        assert tc.extract([(b"b3", bad)]) is None, bad


def test_b3_multi():
    headers = [
        (b"X-B3-TraceId", b"463ac35c9f6413ad48485a3953bb6124"),
        (b"X-B3-SpanId", b"a2fb4a1d1a96d312"),
        (b"X-B3-ParentSpanId", b"0020000000000001"),
        (b"X-B3-Sampled", b"0"),
    ]
    ctx = tc.extract(headers)
    assert ctx is not None and ctx.fmt == tc.B3_MULTI
    assert ctx.sampled is False and ctx.parent_id == 0x20000000000001
    flags = tc.extract([*headers[:2], (b"x-b3-flags", b"1")])
    assert flags is not None and flags.sampled is True
    assert tc.extract([(b"x-b3-spanid", b"a2fb4a1d1a96d312")]) is None


def test_traceparent_wins_over_b3():
    ctx = tc.extract([(b"b3", b"64fe8b2a57d3eff7-e457b5a2e4d86bd1-0"), (b"traceparent", TP)])
    assert ctx is not None and ctx.fmt == tc.W3C and ctx.sampled is True
    # a broken traceparent falls back to b3
    ctx = tc.extract([(b"traceparent", b"nope"), (b"b3", b"64fe8b2a57d3eff7-e457b5a2e4d86bd1-1")])
    assert ctx is not None and ctx.fmt == tc.B3


def test_no_trace_headers():
    assert tc.extract([(b"host", b"x"), (b"content-length", b"3")]) is None
    assert tc.find_trace_headers([]) is None


def test_inject_replaces_every_format():
    headers = [
        (b"Host", b"web"),
        (b"TRACEPARENT", TP),
        (b"b3", b"64fe8b2a57d3eff7-e457b5a2e4d86bd1-1"),
        (b"X-B3-Sampled", b"1"),
    ]
    tc.inject(headers, 1, 2, False, (tc.W3C, tc.B3, tc.B3_MULTI), parent_id=3, tracestate="k=v")
    names = [n for n, _ in headers]
    assert names.count(b"traceparent") == 1 and b"TRACEPARENT" not in names
    assert b"X-B3-Sampled" not in names and names[0] == b"Host"
    found = tc.find_trace_headers(headers)
    assert found is not None
    assert found[b"traceparent"] == b"00-00000000000000000000000000000001-0000000000000002-00"
    assert found[b"tracestate"] == b"k=v"
    assert found[b"b3"] == b"00000000000000000000000000000001-0000000000000002-0-0000000000000003"
    assert found[b"x-b3-parentspanid"] == b"0000000000000003"
    assert found[b"x-b3-sampled"] == b"0"
    for fmt in (tc.W3C, tc.B3, tc.B3_MULTI):
        one = [(b"host", b"x")]
        tc.inject(one, TID, SID, True, (fmt,))
        back = tc.extract(one)
        assert back is not None and (back.trace_id, back.span_id, back.sampled) == (TID, SID, True)


@given(
    st.integers(1, (1 << 128) - 1),
    st.integers(1, (1 << 64) - 1),
    st.booleans(),
    st.sampled_from(tc.FORMATS),
)
def test_inject_extract_round_trip(trace_id, span_id, sampled, fmt):
    headers: list[tuple[bytes, bytes]] = []
    tc.inject(headers, trace_id, span_id, sampled, (fmt,), had_trace_headers=False)
    ctx = tc.extract(headers)
    assert ctx is not None
    assert (ctx.trace_id, ctx.span_id, ctx.sampled, ctx.fmt) == (trace_id, span_id, sampled, fmt)


def test_quick_unsampled_check_agrees_with_the_parser():
    off = TP[:-2] + b"00"
    assert tc.is_unsampled_traceparent(off) and not tc.is_unsampled_traceparent(TP)
    for bad in (
        b"00-00000000000000000000000000000000-b7ad6b7169203331-00",
        b"ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
        b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00-x",
        b"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-00",
    ):
        assert not tc.is_unsampled_traceparent(bad) and tc.parse_traceparent(bad) is None
    assert tc.is_unsampled_traceparent(b"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-02-x")
