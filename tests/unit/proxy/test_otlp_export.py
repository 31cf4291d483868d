"""OTLP endpoints as OpenTelemetry's variables give them."""

from __future__ import annotations

import pytest

from gossamer.errors import ConfigError
from gossamer.proxy.telemetry.otlp_export import parse_endpoint


def test_endpoints():
    assert parse_endpoint("http://jaeger:4317", insecure=True) == ("jaeger", 4317, False)
    assert parse_endpoint("https://collector:4318", insecure=False) == ("collector", 4318, True)
    assert parse_endpoint("https://collector", insecure=True) == ("collector", 4317, False)
    assert parse_endpoint("127.0.0.1:9999", insecure=False) == ("127.0.0.1", 9999, False)
    with pytest.raises(ConfigError, match="OTLP/gRPC endpoint"):
        parse_endpoint("ftp://x", insecure=True)
    with pytest.raises(ConfigError, match="bad port"):
        parse_endpoint("http://x:99999", insecure=True)
