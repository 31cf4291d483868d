"""Start-up checks of the Python environment that turn known breakage into clear errors.

`xds-protos` ships stale copies of OpenTelemetry's protobuf modules; if it was installed
after `opentelemetry-proto`, the OTLP exporter cannot import (docs/architecture.md,
"Known pitfalls").
`check_otel_protos()` detects that without importing protobuf, so commands that export
traces can fail with the fix instead of an ImportError deep in a worker.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from gossamer.errors import GossamerError

_MARKER = "InstrumentationScope"


def otel_common_pb2_path() -> Path | None:
    spec = importlib.util.find_spec("opentelemetry.proto.common.v1.common_pb2")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin)


def check_otel_protos(path: Path | None = None) -> None:
    """Raise a GossamerError with the fix when OpenTelemetry's protobuf files are stale."""
    target = path if path is not None else otel_common_pb2_path()
    if target is None:
        raise GossamerError(
            "opentelemetry-proto is not installed",
            hint="run ./dev setup (or pip install opentelemetry-proto)",
        )
    try:
        text = target.read_bytes()
    except OSError as exc:
        raise GossamerError(f"cannot read {target}: {exc}") from None
    if _MARKER.encode() not in text:
        raise GossamerError(
            "OpenTelemetry's protobuf modules were overwritten by xds-protos' older copies",
            hint=(
                "run: pip install --force-reinstall --no-deps "
                "opentelemetry-proto==$(pip show opentelemetry-proto | sed -n 's/^Version: //p')"
            ),
        )
