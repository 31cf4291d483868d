"""xds-protos and OpenTelemetry's protobuf modules must coexist (docs/architecture.md,
"Known pitfalls")."""

from __future__ import annotations

import pytest

from gossamer.environment import check_otel_protos
from gossamer.errors import GossamerError


def test_otlp_exporter_imports_beside_xds_modules():
    from envoy.config.cluster.v3 import cluster_pb2
    from envoy.extensions.tracers.opentelemetry.samplers.v3 import always_on_sampler_pb2
    from envoy.service.discovery.v3 import ads_pb2_grpc
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope

    assert cluster_pb2.Cluster().DESCRIPTOR.full_name == "envoy.config.cluster.v3.Cluster"
    assert always_on_sampler_pb2 is not None and ads_pb2_grpc is not None
    assert callable(OTLPSpanExporter)
    assert InstrumentationScope(name="x").name == "x"


def test_installed_environment_passes_the_check():
    check_otel_protos()


def test_stale_protos_are_detected_with_the_fix(tmp_path):
    stale = tmp_path / "common_pb2.py"
    stale.write_text("# old generated code without the scope message\n")
    with pytest.raises(GossamerError) as info:
        check_otel_protos(stale)
    assert "force-reinstall" in (info.value.hint or "")
