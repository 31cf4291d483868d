"""The telemetry facade: built from the environment; access logs as JSON lines."""

from __future__ import annotations

import io
import json

import pytest

from gossamer.errors import ConfigError
from gossamer.proxy.telemetry.wiring import AccessLog, Telemetry


def test_defaults_from_an_empty_environment():
    t = Telemetry.from_env({}, service="web")
    assert t.access_log is None  # off by default
    assert not t.tracing.enabled  # no collector configured
    text = t.render_metrics().decode()
    assert "gossamer_trace_spans_dropped_total 0.0" in text
    t.close()


def test_access_log_lines(tmp_path):
    path = tmp_path / "access.log"
    t = Telemetry.from_env({"GOSSAMER_ACCESS_LOG": str(path)}, service="web")
    assert t.access_log is not None
    t.access_log.log(
        reporter="destination",
        method="GET",
        path=b"/items?token=secret",
        authority="web:8080",
        status=503,
        duration=0.0123456,
        source_service="unknown",
        destination_service="web",
        peer_identity=None,
        trace_id=0xABC,
        error="timeout",
        start=1700000000.5,
    )
    t.access_log.log(
        reporter="source",
        method="POST",
        path="/x",
        authority="catalog",
        status=200,
        duration=0.001,
        source_service="web",
        destination_service="catalog",
        bytes_sent=10,
        extra={"route": "default"},
    )
    t.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 2
    first = lines[0]
    assert first["path"] == "/items" and "secret" not in path.read_text()
    assert first["status"] == 503 and first["duration_ms"] == 12.346
    assert first["trace_id"] == f"{0xABC:032x}" and first["error"] == "timeout"
    assert first["ts"] == 1700000000.5 and "peer_identity" not in first
    assert lines[1]["bytes_sent"] == 10 and lines[1]["route"] == "default"


def test_access_log_settings(tmp_path):
    for off in (None, "", "off", "false"):
        assert AccessLog.from_setting(off) is None
    log = AccessLog.from_setting("stdout")
    assert log is not None
    with pytest.raises(ConfigError) as err:
        AccessLog.from_setting(str(tmp_path / "missing-dir" / "x.log"))
    assert err.value.field == "GOSSAMER_ACCESS_LOG"


def test_access_log_flushes_at_most_every_interval():
    stream = io.StringIO()
    log = AccessLog(stream, flush_interval=0.0)
    log.log(
        reporter="source",
        method="GET",
        path="/",
        authority="a",
        status=200,
        duration=0.0,
        source_service="a",
        destination_service="b",
    )
    assert stream.getvalue().count("\n") == 1 and log.lines == 1
