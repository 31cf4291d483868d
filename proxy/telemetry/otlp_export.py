"""OTLP/gRPC span export through the sidecar's own gRPC client (transport/grpc_client.py).

The sidecar's one span export path: trace_export.py's queue hands batches to this exporter.

OpenTelemetry's OTLP exporter is built on grpcio, which the sidecar does not load (its
memory budget, see transport/grpc_client.py). This exporter writes a batch of the sidecar's
`SpanRecord`s with otlp_encode.py (SDK `ReadableSpan`s, if it is given those, with the
OTLP encoder of `opentelemetry-exporter-otlp-proto-common`) and sends it as one
`TraceService/Export` call. `export` runs on the batch processor's thread
(trace_export.py) and hands the call to the sidecar's event loop, waiting at most
`timeout` seconds: a slow or absent collector costs the export thread, never a request.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from gossamer.errors import ConfigError
from gossamer.proxy.telemetry.otlp_encode import ExportRequestWriter
from gossamer.proxy.telemetry.span_record import SpanRecord
from gossamer.proxy.transport.grpc_client import Channel

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def parse_endpoint(endpoint: str, insecure: bool) -> tuple[str, int, bool]:
    """`http://host:4317`, `https://host:4317` or `host:4317` -> (host, port, tls)."""
    text = endpoint if "://" in endpoint else f"http://{endpoint}"
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{endpoint!r} is not an OTLP/gRPC endpoint", field="OTEL_EXPORTER_OTLP_ENDPOINT",
            hint="for example http://jaeger:4317",
        )  # fmt: skip
    try:
        port = parts.port or 4317
    except ValueError:
        raise ConfigError(
            f"bad port in {endpoint!r}", field="OTEL_EXPORTER_OTLP_ENDPOINT"
        ) from None
    return parts.hostname, port, parts.scheme == "https" and not insecure


class OtlpGrpcExporter(SpanExporter):
    """Exports over the sidecar's event loop. Takes `SpanRecord`s once `set_resource`
    has named the resource they belong to (Tracing does), or SDK `ReadableSpan`s."""

    def __init__(
        self,
        endpoint: str,
        *,
        insecure: bool,
        loop: asyncio.AbstractEventLoop,
        timeout: float = 5.0,
    ) -> None:
        from gossamer.environment import check_otel_protos

        # xds-protos' stale copies break the encoder (docs/architecture.md, "Known pitfalls")
        check_otel_protos()
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

        self._encode = encode_spans
        host, port, tls = parse_endpoint(endpoint, insecure)
        context = None
        if tls:
            context = ssl.create_default_context()
            context.set_alpn_protocols(["h2"])
        self.channel = Channel(host, port, context, host, keepalive=0)
        self.loop = loop
        self.timeout = timeout
        self._writer: ExportRequestWriter | None = None

    def set_resource(self, attributes: Mapping[str, Any]) -> None:
        """The resource of the records `export` will be given."""
        self._writer = ExportRequestWriter(attributes)

    def export(self, spans: Sequence[ReadableSpan | SpanRecord]) -> SpanExportResult:
        if self.loop.is_closed():
            return SpanExportResult.FAILURE
        writer = self._writer
        records = [s for s in spans if isinstance(s, SpanRecord)]
        if writer is not None and len(records) == len(spans):
            request = writer.request(records)
        else:
            sdk = [s for s in spans if isinstance(s, ReadableSpan)]
            request = self._encode(sdk).SerializeToString()
        call = self.channel.unary(EXPORT, request, timeout=self.timeout)
        future = asyncio.run_coroutine_threadsafe(call, self.loop)
        try:
            future.result(self.timeout + 1.0)
        except Exception:
            future.cancel()
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        if self.loop.is_closed() or not self.loop.is_running():
            return
        future = asyncio.run_coroutine_threadsafe(self.channel.close(), self.loop)
        try:
            future.result(1.0)
        except Exception:
            future.cancel()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
