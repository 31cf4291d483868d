"""Trace settings from the OpenTelemetry environment variables, and the span queue.

`TracingSettings.from_env(env, ...)` reads the standard variables (a mapping, so tests
pass a dict); a bad value is a ConfigError naming the variable:
  OTEL_SDK_DISABLED=true, OTEL_TRACES_EXPORTER=none   tracing off
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT
                                     the collector (gRPC); tracing is off when unset
  OTEL_EXPORTER_OTLP_INSECURE        plaintext even without an http:// scheme
  OTEL_TRACES_SAMPLER                always_on, always_off, traceidratio,
                                     parentbased_always_on, parentbased_always_off,
                                     parentbased_traceidratio (default)
  OTEL_TRACES_SAMPLER_ARG            the ratio, 0..1 (default 0.01)
  OTEL_PROPAGATORS                   formats written: tracecontext, b3, b3multi
                                     (default tracecontext; a request's own format is
                                     always answered in too; baggage/none ignored)
  OTEL_SERVICE_NAME                  overrides the service name in the resource
  OTEL_BSP_MAX_QUEUE_SIZE, OTEL_BSP_MAX_EXPORT_BATCH_SIZE, OTEL_BSP_SCHEDULE_DELAY (ms)

`DroppingBatchProcessor` is the span processor: `on_end` appends to a bounded deque
(or counts a drop when it is full) and a daemon thread exports batches, so neither a
slow nor a dead collector ever blocks the event loop. The sidecar's one exporter is
`otlp_export.OtlpGrpcExporter` (OTLP/gRPC through its own gRPC client); tests give
in-memory exporters.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from gossamer.errors import ConfigError

SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
DEFAULT_SAMPLER = "parentbased_traceidratio"
DEFAULT_RATIO = 0.01
PROPAGATORS = ("tracecontext", "b3", "b3multi")


@dataclass(frozen=True)
class TracingSettings:
    enabled: bool = False
    endpoint: str | None = None
    insecure: bool = True
    sampler: str = DEFAULT_SAMPLER
    ratio: float = DEFAULT_RATIO
    propagators: tuple[str, ...] = ("tracecontext",)
    resource: tuple[tuple[str, str], ...] = ()
    max_queue_size: int = 2048
    max_export_batch_size: int = 512
    schedule_delay: float = 1.0
    export_timeout: float = 5.0

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str],
        *,
        service: str,
        namespace: str = "default",
        instance: str = "",
        node: str = "",
    ) -> TracingSettings:
        def get(name: str) -> str:
            return env.get(name, "").strip()

        sampler = get("OTEL_TRACES_SAMPLER").lower() or DEFAULT_SAMPLER
        if sampler not in SAMPLERS:
            raise ConfigError(
                f"unknown sampler {sampler!r}",
                field="OTEL_TRACES_SAMPLER",
                hint=f"use one of {', '.join(SAMPLERS)}",
            )
        ratio = DEFAULT_RATIO
        if get("OTEL_TRACES_SAMPLER_ARG") and sampler.endswith("traceidratio"):
            ratio = _number(get("OTEL_TRACES_SAMPLER_ARG"), "OTEL_TRACES_SAMPLER_ARG", 0.0, 1.0)
        formats = []
        for name in (p.strip().lower() for p in get("OTEL_PROPAGATORS").split(",")):
            if name in PROPAGATORS and name not in formats:
                formats.append(name)
            elif name not in ("", "baggage", "none", *PROPAGATORS):
                raise ConfigError(
                    f"unknown propagator {name!r}",
                    field="OTEL_PROPAGATORS",
                    hint=f"use some of {', '.join(PROPAGATORS)}",
                )
        endpoint = get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or get("OTEL_EXPORTER_OTLP_ENDPOINT")
        disabled = get("OTEL_SDK_DISABLED").lower() == "true"
        exporter = get("OTEL_TRACES_EXPORTER").lower() or "otlp"
        if exporter not in ("otlp", "none"):
            raise ConfigError(
                f"unsupported traces exporter {exporter!r}",
                field="OTEL_TRACES_EXPORTER",
                hint="the sidecar exports over OTLP/gRPC; use otlp or none",
            )
        insecure = not endpoint.startswith("https://")
        if get("OTEL_EXPORTER_OTLP_INSECURE").lower() == "true":
            insecure = True
        resource = {
            "service.name": get("OTEL_SERVICE_NAME") or service,
            "service.namespace": namespace,
            "telemetry.sdk.name": "opentelemetry",
            "gossamer.component": "sidecar",
        }
        if instance:
            resource["service.instance.id"] = instance
        version = get("GOSSAMER_SERVICE_VERSION")
        if version:
            resource["service.version"] = version[:128]
        if node:
            resource["gossamer.node"] = node
        return cls(
            enabled=bool(endpoint) and not disabled and exporter == "otlp",
            endpoint=endpoint or None,
            insecure=insecure,
            sampler=sampler,
            ratio=ratio,
            propagators=tuple(formats) or ("tracecontext",),
            resource=tuple(sorted(resource.items())),
            max_queue_size=int(_number(get("OTEL_BSP_MAX_QUEUE_SIZE") or "2048", "OTEL_BSP_MAX_QUEUE_SIZE", 1, 1e6)),
            max_export_batch_size=int(_number(get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE") or "512", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 1, 1e6)),
            schedule_delay=_number(get("OTEL_BSP_SCHEDULE_DELAY") or "1000", "OTEL_BSP_SCHEDULE_DELAY", 1, 3.6e6) / 1000,
        )  # fmt: skip


def _number(text: str, name: str, low: float, high: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"expected a number, got {text!r}", field=name) from None
    if not low <= value <= high:
        raise ConfigError(f"must be between {low:g} and {high:g}, got {value:g}", field=name)
    return value


class DroppingBatchProcessor(SpanProcessor):
    """Bounded queue + export thread. Full queue: the span is dropped and counted."""

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        max_queue_size: int = 2048,
        max_export_batch_size: int = 512,
        schedule_delay: float = 1.0,
        convert: Callable[[Any], ReadableSpan] | None = None,
    ) -> None:
        self.exporter = exporter
        # queued items become what the exporter takes on the export thread
        self._convert = convert
        self.max_queue_size = max_queue_size
        self.batch_size = min(max_export_batch_size, max_queue_size)
        self.schedule_delay = schedule_delay
        self.dropped = 0
        self.exported = 0
        self.failed = 0
        self._queue: collections.deque[Any] = collections.deque()
        self._wake = threading.Event()
        self._stopping = False
        self._deadline: float | None = None
        self._export_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="gossamer-span-export", daemon=True)
        self._thread.start()

    @classmethod
    def for_settings(
        cls,
        settings: TracingSettings,
        exporter: SpanExporter,
        convert: Callable[[Any], ReadableSpan] | None = None,
    ) -> DroppingBatchProcessor:
        return cls(
            exporter,
            max_queue_size=settings.max_queue_size,
            max_export_batch_size=settings.max_export_batch_size,
            schedule_delay=settings.schedule_delay,
            convert=convert,
        )

    # -- request path (event loop) -----------------------------------------------------
    def on_start(self, span: Any, parent_context: Any = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        self.add(span)

    def add(self, span: Any) -> None:
        """Queue a finished span (or a record `convert` turns into one), or drop it."""
        queue = self._queue
        if self._stopping or len(queue) >= self.max_queue_size:
            self.dropped += 1
            return
        queue.append(span)
        if len(queue) >= self.batch_size:
            self._wake.set()

    # -- export thread -----------------------------------------------------------------
    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self.schedule_delay)
            self._wake.clear()
            self._drain()
        self._drain(self._deadline)  # last call: what fits before the shutdown deadline

    def _drain(self, deadline: float | None = None) -> None:
        with self._export_lock:
            while self._queue:
                if deadline is not None and time.monotonic() > deadline:
                    return
                batch: list[ReadableSpan] = []
                while self._queue and len(batch) < self.batch_size:
                    batch.append(self._queue.popleft())
                self._export(batch)

    def _export(self, batch: Sequence[Any]) -> None:
        try:
            if self._convert is not None:
                batch = [self._convert(item) for item in batch]
            result = self.exporter.export(batch)
        except Exception:  # an exporter bug must not kill the thread
            result = SpanExportResult.FAILURE
        if result == SpanExportResult.SUCCESS:
            self.exported += len(batch)
        else:
            self.failed += len(batch)

    # -- lifecycle ---------------------------------------------------------------------
    def force_flush(self, timeout_millis: int = 30000) -> bool:
        deadline = time.monotonic() + timeout_millis / 1000
        self._drain(deadline)
        return not self._queue

    def shutdown(self) -> None:
        self.shutdown_within(2.0)

    def shutdown_within(self, timeout: float) -> None:
        """Export what is queued within `timeout` seconds, drop the rest, stop."""
        if self._stopping:
            return
        self._deadline = time.monotonic() + timeout
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)
        # Still exporting (collector slow or gone): shutting the exporter down aborts
        # its retries; whatever is still queued is dropped.
        self.exporter.shutdown()
        self.dropped += len(self._queue)
        self._queue.clear()
