"""The policy words of mesh.yaml and xDS, as enums shared by the control plane and the sidecar.

A member added here must be handled on both sides: a table-driven test
(`tests/unit/contract/test_vocabulary.py`) checks that the control plane translates
every member and that the sidecar decodes and implements every member.
"""

from __future__ import annotations

from enum import StrEnum


class LbPolicy(StrEnum):
    """mesh.yaml `lb_policy`."""

    ROUND_ROBIN = "round_robin"
    RANDOM = "random"
    LEAST_REQUEST = "least_request"
    EWMA = "ewma"
    RING_HASH = "ring_hash"


class Protocol(StrEnum):
    """The protocol of a service port (mesh.yaml `ports[].protocol`)."""

    HTTP = "http"
    HTTP2 = "http2"
    GRPC = "grpc"
    TCP = "tcp"

    @property
    def is_h2(self) -> bool:
        """Carried over HTTP/2 (http2 and grpc ports)."""
        return self is Protocol.HTTP2 or self is Protocol.GRPC

    @property
    def is_http(self) -> bool:
        """Routed as HTTP requests (every protocol but tcp)."""
        return self is not Protocol.TCP


class HttpRetryOn(StrEnum):
    """Retry conditions on HTTP answers, named as Envoy's `x-envoy-retry-on` values."""

    FIVE_XX = "5xx"
    GATEWAY_ERROR = "gateway-error"
    RESET = "reset"
    RESET_BEFORE_REQUEST = "reset-before-request"
    CONNECT_FAILURE = "connect-failure"
    RETRIABLE_4XX = "retriable-4xx"
    REFUSED_STREAM = "refused-stream"


class GrpcRetryOn(StrEnum):
    """Retry conditions on gRPC statuses, named as Envoy's `x-envoy-retry-grpc-on` values."""

    CANCELLED = "cancelled"
    DEADLINE_EXCEEDED = "deadline-exceeded"
    INTERNAL = "internal"
    RESOURCE_EXHAUSTED = "resource-exhausted"
    UNAVAILABLE = "unavailable"


# gRPC status codes of the retriable statuses (grpc/status.h).
GRPC_RETRY_CODES = {
    GrpcRetryOn.CANCELLED: 1,
    GrpcRetryOn.DEADLINE_EXCEEDED: 4,
    GrpcRetryOn.RESOURCE_EXHAUSTED: 8,
    GrpcRetryOn.INTERNAL: 13,
    GrpcRetryOn.UNAVAILABLE: 14,
}


class Health(StrEnum):
    """An endpoint's health as the registry holds it and EDS carries it."""

    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    DRAINING = "draining"
