"""The sidecar's tap (proxy/telemetry/tap.py): records, filters, the cap and its drops."""

from __future__ import annotations

from gossamer.contract import mesh_pb2
from gossamer.proxy.telemetry.tap import Tap, TapFilter, TokenBucket, build_record, trace_of

TRACE = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def offer(tap: Tap, *, direction: str = "outbound", to: str = "catalog", path: bytes = b"/",
          method: str = "GET", headers: list[tuple[bytes, bytes]] | None = None) -> None:  # fmt: skip
    tap.offer(
        direction, "spiffe://td/ns/default/sa/web", f"spiffe://td/ns/default/sa/{to}", to,
        method, f"{to}:8080", path, 200, 0.012, 5, headers or [],
    )  # fmt: skip


def open_tap(tap: Tap, tap_id: str = "t1", rate: int = 0, **flt: str) -> None:
    tap.open(mesh_pb2.TapOpen(id=tap_id, rate=rate, **flt))


def test_record_has_no_query_and_no_header_values() -> None:
    headers = [(b"authorization", b"Bearer s3cret"), (b"traceparent", TRACE)]
    r = build_record(
        start_wall=1000.5, direction="inbound", source="spiffe://td/ns/default/sa/web",
        destination="spiffe://td/ns/default/sa/catalog", method="GET", authority="catalog",
        path=b"/items?token=abc#frag", status=503, seconds=0.0421, content_length=None,
        headers=headers,
    )  # fmt: skip
    assert r.path == "/items"
    assert r.status == 503 and r.latency_ms == 42.1 and r.bytes == -1
    assert r.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736" and r.sampled
    assert b"s3cret" not in r.SerializeToString() and b"token=abc" not in r.SerializeToString()


def test_trace_of_reads_only_a_valid_traceparent() -> None:
    assert trace_of([]) == ("", False)
    assert trace_of([(b"traceparent", TRACE[:-2] + b"00")]) == (TRACE[3:35].decode(), False)
    assert trace_of([(b"Traceparent", b"garbage")]) == ("", False)


def test_filters() -> None:
    f = TapFilter(direction="outbound", to="catalog", path_prefix="/api", method="POST")
    assert f.matches("outbound", "catalog", "/api/items", "POST")
    assert not f.matches("inbound", "catalog", "/api/items", "POST")
    assert not f.matches("outbound", "vault", "/api/items", "POST")
    assert not f.matches("outbound", "catalog", "/other", "POST")
    assert not f.matches("outbound", "catalog", "/api", "GET")
    assert TapFilter().matches("inbound", "x", "/", "GET")


def test_token_bucket_refills_at_its_rate_and_never_waits() -> None:
    clock = Clock()
    bucket = TokenBucket(5, clock)
    assert [bucket.take() for _ in range(7)] == [True] * 5 + [False] * 2
    clock.now += 0.2  # one token
    assert bucket.take() and not bucket.take()
    clock.now += 10  # never more than the capacity
    assert sum(bucket.take() for _ in range(20)) == 5


def test_no_tap_no_work_and_closing_clears() -> None:
    tap = Tap()
    assert not tap.active
    open_tap(tap)
    assert tap.active
    offer(tap)
    tap.close("t1")
    assert not tap.active and tap.queue == [] and tap.drain() == []


def test_cap_drops_and_counts_then_reports_drops_in_the_batch() -> None:
    clock = Clock()
    tap = Tap(clock=clock, wall=lambda: 5000.0)
    open_tap(tap, rate=3, path_prefix="/a")
    for _ in range(10):
        offer(tap, path=b"/a?x=1")
    offer(tap, path=b"/b")  # not matching: neither sent nor dropped
    assert (tap.records_total, tap.dropped_total, tap.offered_total) == (3, 7, 11)
    (report,) = tap.drain()
    assert report.tap_id == "t1" and len(report.records) == 3 and report.dropped == 7
    assert report.records[0].path == "/a" and report.records[0].ts == 5000.0 - 0.012
    assert tap.drain() == []  # drops are reported once


def test_rate_is_capped_by_the_sidecar() -> None:
    tap = Tap(max_rate=100, clock=Clock())
    open_tap(tap, rate=1000)
    assert tap.taps["t1"].bucket.rate == 100


def test_queue_limit_drops() -> None:
    tap = Tap(queue_limit=4, clock=Clock())
    open_tap(tap, rate=100)
    for _ in range(6):
        offer(tap)
    assert tap.records_total == 4 and tap.dropped_total == 2


def test_two_taps_each_get_their_matching_records() -> None:
    tap = Tap(clock=Clock())
    open_tap(tap, "a", method="GET")
    open_tap(tap, "b", direction="inbound")
    offer(tap, direction="outbound")
    offer(tap, direction="inbound", method="POST")
    reports = {r.tap_id: r for r in tap.drain()}
    assert [r.direction for r in reports["a"].records] == ["outbound"]
    assert [r.method for r in reports["b"].records] == ["POST"]
