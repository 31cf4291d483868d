"""New roots drawn in batches: valid unsampled traceparents, and exactly the decision
TraceIdRatioBased makes on each trace id."""

from __future__ import annotations

import random

import pytest

from gossamer.proxy.telemetry.trace_context import (
    Sampler,
    is_unsampled_traceparent,
    parse_traceparent,
)
from gossamer.proxy.telemetry.trace_roots import BATCH, RootIds

RECORD = 24  # random bytes per root: 16 of trace id, 8 of span id


def drain(roots: RootIds, n: int) -> list[bytes | int]:
    out = []
    for _ in range(n):
        out.append(roots.pending.pop() if roots.pending else roots.draw())
    return out


@pytest.mark.parametrize("ratio", [0.0, 0.01, 0.3, 1.0])
def test_each_root_gets_the_ratio_samplers_decision_on_its_own_ids(ratio):
    sampler = Sampler("parentbased_traceidratio", ratio)
    raw = random.Random(11).randbytes(RECORD * BATCH * 3)
    roots = RootIds(random.Random(11).randbytes, sampler.bound)
    drawn = drain(roots, BATCH * 3)
    for batch in range(3):  # within a batch, roots come from its end
        for i in range(BATCH):
            start = (batch * BATCH + i) * RECORD
            trace_id = int.from_bytes(raw[start : start + 16], "big")
            span_id = int.from_bytes(raw[start + 16 : start + RECORD], "big")
            root = drawn[batch * BATCH + BATCH - 1 - i]
            if sampler.decide(None, trace_id):
                assert root == trace_id
            else:
                assert isinstance(root, bytes) and is_unsampled_traceparent(root)
                parsed = parse_traceparent(root)
                assert parsed is not None and not parsed.sampled
                assert (parsed.trace_id, parsed.span_id) == (trace_id, span_id)
    sampled = sum(isinstance(r, int) for r in drawn)
    if ratio in (0.0, 1.0):
        assert sampled == ratio * len(drawn)


def test_sampled_roots_near_the_bound_are_decided_on_all_64_bits():
    """Only roots whose first byte of the low 64 bits could be under the bound are
    examined in Python: ones that share that byte with the bound go either way."""
    bound = Sampler("traceidratio", 0.01).bound
    records = []
    for low in (bound - 1, bound, bound + 1, 0, (1 << 64) - 1):
        records.append(b"\x01" * 8 + low.to_bytes(8, "big") + b"\x02" * 8)
    raw = b"".join(records) + b"\x03" * (RECORD * (BATCH - len(records)))
    roots = RootIds(lambda n: raw[:n], bound)
    drawn = drain(roots, BATCH)[::-1]
    assert [isinstance(r, int) for r in drawn[:5]] == [True, False, False, True, False]
    assert drawn[0] == int.from_bytes(records[0][:16], "big")


def test_a_batch_with_an_all_zero_id_is_drawn_again():
    good = random.Random(5).randbytes(RECORD * BATCH)
    zero_span = bytearray(good)
    zero_span[RECORD * 7 + 16 : RECORD * 8] = bytes(8)
    zero_trace = bytearray(good)
    zero_trace[RECORD * 9 : RECORD * 9 + 16] = bytes(16)
    sources = [bytes(zero_span), bytes(zero_trace), good]
    roots = RootIds(lambda n: sources.pop(0), 0)
    drawn = drain(roots, BATCH)
    assert not sources  # both bad batches were refused
    assert all(isinstance(r, bytes) and is_unsampled_traceparent(r) for r in drawn)
    assert len(set(drawn)) == BATCH


def test_draw_appends_to_what_is_left():
    roots = RootIds(random.Random(2).randbytes, Sampler("traceidratio", 1.0).bound)
    roots.pending.append(b"left")
    assert isinstance(roots.draw(), int)
    assert roots.pending[0] == b"left" and len(roots.pending) == BATCH
    assert all(isinstance(r, int) for r in roots.pending[1:])
