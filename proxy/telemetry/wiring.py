"""One sidecar's telemetry: metrics, tracing and access logs, built from the environment.

The proxy makes one `Telemetry` at start-up (`Telemetry.from_env(os.environ, service=...)`)
and uses its parts on the data path:

- `telemetry.metrics` (`SidecarMetrics`, metrics.py): series objects recorded on
  every request and connection; `telemetry.render_metrics()` for the admin `/metrics`.
- `telemetry.tracing` (`Tracing`, tracing.py): `start_server_span` / `start_client_span`
  -> `SpanHandle` with `inject(headers)`, `set_peer(id)`, `end(status, error_type)`.
- `telemetry.tap` (`Tap`, tap.py): live request records for `gossamer tap`, filtered
  and capped here; the agent's tap stream (agent/tap_stream.py) sends them.
- `telemetry.access_log` (`AccessLog` or None when off, the default): `log(...)` writes
  one JSON line per request. `GOSSAMER_ACCESS_LOG`: unset/`off` (default), `stdout`,
  `stderr` or a file path (appended).

Nothing here opens a listener; the trace exporter's thread is the only background work.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from typing import IO, Any

from gossamer.errors import ConfigError
from gossamer.proxy.telemetry.metrics import CONTENT_TYPE, SidecarMetrics
from gossamer.proxy.telemetry.tap import Tap
from gossamer.proxy.telemetry.trace_export import TracingSettings
from gossamer.proxy.telemetry.tracing import Tracing

__all__ = ["CONTENT_TYPE", "AccessLog", "Telemetry"]


class AccessLog:
    """JSON lines, one per request. The query string is left out of the path (it may
    carry secrets); headers are never logged."""

    def __init__(self, stream: IO[str], *, flush_interval: float = 0.5, owned: bool = False):
        self.stream = stream
        self.flush_interval = flush_interval
        self._owned = owned
        self._last_flush = time.monotonic()
        self.lines = 0

    @classmethod
    def from_setting(cls, value: str | None) -> AccessLog | None:
        value = (value or "").strip()
        if value.lower() in ("", "off", "false", "0", "none"):
            return None
        if value == "stdout":
            return cls(sys.stdout)
        if value == "stderr":
            return cls(sys.stderr)
        try:
            stream = open(value, "a", encoding="utf-8", buffering=1 << 16)  # noqa: SIM115
        except OSError as exc:
            raise ConfigError(
                f"cannot open the access log {value!r}: {exc.strerror}",
                field="GOSSAMER_ACCESS_LOG",
                hint="use stdout, stderr, off or a writable file path",
            ) from None
        return cls(stream, owned=True)

    def log(
        self,
        *,
        reporter: str,
        method: str,
        path: bytes | str,
        authority: str,
        status: int,
        duration: float,
        source_service: str,
        destination_service: str,
        protocol: str = "HTTP/1.1",
        bytes_received: int | None = None,
        bytes_sent: int | None = None,
        peer_identity: str | None = None,
        upstream: str | None = None,
        trace_id: int = 0,
        error: str | None = None,
        start: float | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        if isinstance(path, bytes):
            path = path.decode("latin-1")
        entry: dict[str, Any] = {
            "ts": round(start if start is not None else time.time() - duration, 6),
            "reporter": reporter,
            "method": method,
            "authority": authority,
            "path": path.partition("?")[0],
            "protocol": protocol,
            "status": status,
            "duration_ms": round(duration * 1000, 3),
            "source_service": source_service,
            "destination_service": destination_service,
        }
        for key, value in (
            ("bytes_received", bytes_received),
            ("bytes_sent", bytes_sent),
            ("peer_identity", peer_identity),
            ("upstream", upstream),
            ("error", error),
        ):
            if value is not None:
                entry[key] = value
        if trace_id:
            entry["trace_id"] = f"{trace_id:032x}"
        if extra:
            entry.update(extra)
        self.stream.write(json.dumps(entry, separators=(",", ":")) + "\n")
        self.lines += 1
        now = time.monotonic()
        if now - self._last_flush >= self.flush_interval:
            self.flush()
            self._last_flush = now

    def flush(self) -> None:
        try:
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def close(self) -> None:
        self.flush()
        if self._owned:
            self.stream.close()


class Telemetry:
    def __init__(
        self,
        tracing_settings: TracingSettings | None = None,
        *,
        access_log: AccessLog | None = None,
        span_exporter: Any = None,
        rng: Any = None,
    ) -> None:
        self.metrics = SidecarMetrics()
        self.tracing = Tracing(
            tracing_settings or TracingSettings(), exporter=span_exporter, rng=rng
        )
        self.access_log = access_log
        self.tap = tap = Tap()  # live records for `gossamer tap` (tap.py)
        self.metrics.add_counter(
            "gossamer_tap_records",
            "Live tap records queued for the control plane (gossamer tap).",
            lambda: tap.records_total,
        )
        self.metrics.add_counter(
            "gossamer_tap_records_dropped",
            "Live tap records dropped over a tap's rate cap or the queue limit.",
            lambda: tap.dropped_total,
        )
        self.metrics.add_counter(
            "gossamer_tap_requests_examined",
            "Requests matched against an open tap's filters (zero while no tap is open).",
            lambda: tap.offered_total,
        )
        self.metrics.add_counter(
            "gossamer_trace_spans_exported",
            "Spans accepted by the trace collector.",
            lambda: self.tracing.exported,
        )
        self.metrics.add_counter(
            "gossamer_trace_spans_dropped",
            "Spans dropped because the export queue was full (collector slow or down).",
            lambda: self.tracing.dropped,
        )

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str],
        *,
        service: str,
        namespace: str = "default",
        instance: str = "",
        node: str = "",
        span_exporter: Any = None,
    ) -> Telemetry:
        settings = TracingSettings.from_env(
            env, service=service, namespace=namespace, instance=instance, node=node
        )
        access_log = AccessLog.from_setting(env.get("GOSSAMER_ACCESS_LOG"))
        return cls(settings, access_log=access_log, span_exporter=span_exporter)

    def render_metrics(self) -> bytes:
        return self.metrics.render()

    def close(self, timeout: float = 2.0) -> None:
        """Flush logs and stop the trace exporter (spans not sent within `timeout` are
        dropped). Blocking: call it from a thread (`asyncio.to_thread`) on shutdown."""
        self.tracing.shutdown(timeout)
        if self.access_log is not None:
            self.access_log.close()
