"""Small protobuf helpers shared by the translation modules (packing, durations, structs)."""

from __future__ import annotations

from collections.abc import Mapping

from envoy.config.core.v3 import base_pb2, config_source_pb2
from google.protobuf import any_pb2, duration_pb2, struct_pb2
from google.protobuf.message import Message


def pack(message: Message) -> any_pb2.Any:
    """An Any with deterministic bytes, so equal content always hashes equal."""
    out = any_pb2.Any()
    out.Pack(message, deterministic=True)
    return out


def ads_source() -> config_source_pb2.ConfigSource:
    """`ConfigSource{ads: {}}`: fetch over the same ADS stream (what gRPC requires)."""
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.V3,
    )


def duration(seconds: float) -> duration_pb2.Duration:
    whole = int(seconds)
    return duration_pb2.Duration(seconds=whole, nanos=round((seconds - whole) * 1e9))


def struct(values: Mapping[str, str | int | float | bool]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(dict(values))
    return out


def metadata(filter_name: str, values: Mapping[str, str | int | float | bool]) -> base_pb2.Metadata:
    out = base_pb2.Metadata()
    out.filter_metadata[filter_name].CopyFrom(struct(values))
    return out
