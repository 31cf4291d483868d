"""The control plane's /metrics page in unit tests, from sources that are idle but for
the ones a test gives (`control_metrics_text(taps=hub.counts)`)."""

from __future__ import annotations

from typing import Any

from gossamer.control.metrics import ControlMetricSources, metrics_renderer
from gossamer.control.publisher import PublishStats
from gossamer.control.stream_status import StreamRegistry


def control_metrics_text(**sources: Any) -> str:
    """The page rendered from `ControlMetricSources` with these fields set."""
    idle: dict[str, Any] = {
        "streams": StreamRegistry(),
        "publish_stats": PublishStats,
        "certificates_issued": lambda: 0,
        "registry_size": lambda: (0, 0),
        "config_loads": lambda: 0,
        "config_error": lambda: False,
    }
    return metrics_renderer(ControlMetricSources(**{**idle, **sources}))().decode()
