"""Per-request cost of the sidecar's telemetry: metrics recording and tracing, in-process.

Usage: ./dev bench telemetry_overhead [--count N] [--no-export]

What one sidecar does per proxied request, measured on one pinned core:
- metrics: one `RequestSeries.record(status, seconds)` on a series the proxy keeps
  (and the same with the series looked up per request), against prometheus-client's
  own labelled Counter + Histogram children for comparison;
- tracing, as the telemetry layers do it: `unsampled(headers)` first, and only when
  that says no, `start_server_span(headers)` + `inject` + `end(status)`; when tracing is
  off, when the caller's context says "not sampled", at 1% (new traces, the default
  sampler) and at 100%; sampled spans are exported over OTLP/gRPC to a real receiver
  (opentelemetry-proto's TraceService) in a separate process, so the batch export
  thread's work counts against this process as it would in a sidecar;
- everything a sidecar adds to one request at 1%: one span + one metrics record.
The reference, measured in the same run, is parsing one HTTP/1.1 request head with
httptools: the least work any proxy does per request. Ratios are against it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence

import httptools
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from prometheus_client import CollectorRegistry, Counter, Histogram

from gossamer.proxy.telemetry.metrics import BUCKETS, SidecarMetrics
from gossamer.proxy.telemetry.otlp_export import OtlpGrpcExporter
from gossamer.proxy.telemetry.trace_export import TracingSettings
from gossamer.proxy.telemetry.tracing import Tracing

HEAD = (
    b"GET /items?page=2 HTTP/1.1\r\nHost: catalog:8080\r\nUser-Agent: bench/1.0\r\n"
    b"Accept: application/json\r\nAccept-Encoding: gzip\r\nX-Request-Id: 4f1c\r\n\r\n"
)
HEADERS = [
    (b"Host", b"catalog:8080"),
    (b"User-Agent", b"bench/1.0"),
    (b"Accept", b"application/json"),
    (b"Accept-Encoding", b"gzip"),
    (b"X-Request-Id", b"4f1c"),
]
UNSAMPLED = (b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00")

RECEIVER = """
import sys, time
from tests.helpers.otlp_receiver import OtlpReceiver
r = OtlpReceiver().start()
print(r.port, flush=True)
sys.stdin.read()
r.stop()
"""


def pin_one_core() -> str:
    try:
        core = sorted(os.sched_getaffinity(0))[-1]
        os.sched_setaffinity(0, {core})
        return f"core {core}"
    except (AttributeError, OSError):
        return "unpinned"


def per_call(fn: Callable[[], object], count: int, repeats: int = 3) -> float:
    """Best-of-`repeats` seconds per call."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(count):
            fn()
        best = min(best, (time.perf_counter() - start) / count)
    return best


def loop_overhead(count: int) -> float:
    def nothing() -> None:
        return None

    return per_call(nothing, count)


class _Parser:
    def on_header(self, name: bytes, value: bytes) -> None:
        pass


def parse_head() -> None:
    parser = httptools.HttpRequestParser(_Parser())
    parser.feed_data(HEAD)


def stock_prometheus() -> Callable[[], None]:
    registry = CollectorRegistry()
    labels = ["reporter", "source_service", "destination_service", "response_code",
              "classification", "connection_security_policy"]  # fmt: skip
    counter = Counter("gossamer_requests", "r", labels, registry=registry)
    hist = Histogram(
        "gossamer_request_duration_seconds",
        "d",
        labels[:3] + labels[5:],
        buckets=BUCKETS,
        registry=registry,
    )
    children = (
        counter.labels("source", "web", "catalog", "200", "success", "mutual_tls"),
        hist.labels("source", "web", "catalog", "mutual_tls"),
    )

    def record() -> None:
        children[0].inc()
        children[1].observe(0.0031)

    return record


def span_cycle(tracing: Tracing, with_context: bool) -> Callable[[], None]:
    base = [*HEADERS, UNSAMPLED] if with_context else HEADERS

    def one() -> None:
        # what the telemetry layers do: the unsampled question first, a span only if not
        headers = list(base)
        if tracing.enabled and tracing.unsampled(headers):
            return
        span = tracing.start_server_span(
            headers, method="GET", path=b"/items?page=2", server_address="catalog", server_port=8080
        )
        span.inject(headers)
        if span.sampled:
            span.end(200)

    return one


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench telemetry_overhead")
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--no-export", action="store_true", help="drop spans instead of OTLP")
    args = parser.parse_args(argv)
    where = pin_one_core()
    count = args.count
    receiver = None
    endpoint = "http://127.0.0.1:9"  # unused with --no-export
    if not args.no_export:
        receiver = subprocess.Popen(
            [sys.executable, "-c", RECEIVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert receiver.stdout is not None
        endpoint = f"http://127.0.0.1:{receiver.stdout.readline().strip()}"
    try:
        rows = measure(count, endpoint, args.no_export)
    finally:
        if receiver is not None:
            assert receiver.stdin is not None
            receiver.stdin.close()
            receiver.wait(10)
    loop = rows.pop("_loop")
    dropped, exported = int(rows.pop("_dropped")), int(rows.pop("_exported"))
    reference = rows["reference: httptools parse of one request head"]
    print(f"telemetry cost per request, one process pinned to {where}, {count:,} requests")
    print(f"(loop overhead {loop * 1e9:.0f} ns subtracted; best of 3; machine shared, so noisy)")
    print(f"{'measure':58} {'ns/request':>11} {'ratio':>7}")
    for name, seconds in rows.items():
        net = max(seconds - loop, 0.0)
        ratio = net / max(reference - loop, 1e-12)
        print(f"{name:58} {net * 1e9:11,.0f} {ratio:7.2f}")
    if exported or dropped:
        print(
            f"100% run: {exported:,} spans exported, {dropped:,} dropped when the export "
            "queue (8,192) was full: spans were made faster than one core could export them"
        )
    return 0


def measure(count: int, endpoint: str, no_export: bool) -> dict[str, float]:
    rows: dict[str, float] = {"_loop": loop_overhead(count)}
    rows["reference: httptools parse of one request head"] = per_call(parse_head, count)

    metrics = SidecarMetrics()
    series = metrics.requests("source", "web", "catalog", "mutual_tls", "items", "GET")
    rows["metrics: series.record (series kept by the proxy)"] = per_call(
        lambda: series.record(200, 0.0031), count
    )
    rows["metrics: lookup + record"] = per_call(
        lambda: metrics.requests("source", "web", "catalog", "mutual_tls", "items", "GET").record(
            200, 0.0031
        ),
        count,
    )
    rows["metrics: prometheus-client labelled children (comparison)"] = per_call(
        stock_prometheus(), count
    )

    # spans leave as in a sidecar: the export thread hands each batch to the sidecar's
    # own gRPC client on an event loop (here a loop of its own in a thread)
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()

    def tracing(ratio: float, sampler: str = "parentbased_traceidratio") -> Tracing:
        settings = TracingSettings(
            enabled=ratio >= 0,
            endpoint=endpoint,
            sampler=sampler,
            ratio=max(ratio, 0.0),
            resource=(("service.name", "catalog"),),
            max_queue_size=8192,
        )
        exporter: SpanExporter = (
            _DropExporter() if no_export else OtlpGrpcExporter(endpoint, insecure=True, loop=loop)
        )
        return Tracing(settings, exporter=exporter, rng=random.Random(1))

    off = tracing(-1)
    rows["tracing off: start + inject + end"] = per_call(span_cycle(off, True), count)
    one_pct = tracing(0.01)
    rows["tracing 1%, caller's context says not sampled"] = per_call(
        span_cycle(one_pct, True), count
    )
    rows["tracing 1%, new traces (root decision, ids injected)"] = per_call(
        span_cycle(one_pct, False), count
    )
    sampled_count = max(count // 10, 1000)
    full = tracing(1.0)
    export = "exporter that drops" if no_export else "batched OTLP export"
    rows[f"tracing 100%: span record (SDK span made on the export thread), {export}"] = per_call(
        span_cycle(full, False), sampled_count
    )
    one_pct.force_flush(10)
    full.force_flush(30)
    lost = full.dropped

    cycle = span_cycle(one_pct, False)

    def everything() -> None:
        cycle()
        series.record(200, 0.0031)

    rows["per request at 1%: span + metrics record"] = per_call(everything, count)
    for t in (off, one_pct, full):
        t.shutdown(5)
    rows["_dropped"] = float(lost)
    rows["_exported"] = float(full.exported)
    return rows


class _DropExporter(SpanExporter):
    """Accepts every batch and keeps nothing (--no-export)."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS
