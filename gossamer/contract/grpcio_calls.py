"""The mesh API's gRPC methods bound for grpcio, without generated service stubs.

Servers build handlers with `identity_handler(...)` / `registration_handler(...)` /
`tap_handler(...)`; clients call `certify(channel)` / `register(channel)` /
`tap_watch(channel)` to get typed multicallables.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from gossamer.contract import mesh_pb2
from gossamer.contract.rpc import CERTIFY, IDENTITY, REGISTER, REGISTRATION, TAP, TAP_WATCH

CertifyHandler = Callable[
    [mesh_pb2.CertifyRequest, grpc.aio.ServicerContext[Any, Any]],
    Awaitable[mesh_pb2.CertifyResponse],
]
RegisterHandler = Callable[
    [AsyncIterator[mesh_pb2.RegisterRequest], grpc.aio.ServicerContext[Any, Any]],
    AsyncIterator[mesh_pb2.RegisterResponse],
]


def identity_handler(certify_fn: CertifyHandler) -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(
        IDENTITY,
        {
            "Certify": grpc.unary_unary_rpc_method_handler(
                certify_fn,
                request_deserializer=mesh_pb2.CertifyRequest.FromString,
                response_serializer=mesh_pb2.CertifyResponse.SerializeToString,
            )
        },
    )


def registration_handler(register_fn: RegisterHandler) -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(
        REGISTRATION,
        {
            "Register": grpc.stream_stream_rpc_method_handler(
                register_fn,
                request_deserializer=mesh_pb2.RegisterRequest.FromString,
                response_serializer=mesh_pb2.RegisterResponse.SerializeToString,
            )
        },
    )


TapHandler = Callable[
    [AsyncIterator[mesh_pb2.TapReport], grpc.aio.ServicerContext[Any, Any]],
    AsyncIterator[mesh_pb2.TapCommand],
]


def tap_handler(watch_fn: TapHandler) -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(
        TAP,
        {
            "Watch": grpc.stream_stream_rpc_method_handler(
                watch_fn,
                request_deserializer=mesh_pb2.TapReport.FromString,
                response_serializer=mesh_pb2.TapCommand.SerializeToString,
            )
        },
    )


def tap_watch(channel: grpc.aio.Channel) -> grpc.aio.StreamStreamMultiCallable[Any, Any]:
    return channel.stream_stream(
        TAP_WATCH,
        request_serializer=mesh_pb2.TapReport.SerializeToString,
        response_deserializer=mesh_pb2.TapCommand.FromString,
    )


def certify(channel: grpc.aio.Channel) -> grpc.aio.UnaryUnaryMultiCallable[Any, Any]:
    return channel.unary_unary(
        CERTIFY,
        request_serializer=mesh_pb2.CertifyRequest.SerializeToString,
        response_deserializer=mesh_pb2.CertifyResponse.FromString,
    )


def register(channel: grpc.aio.Channel) -> grpc.aio.StreamStreamMultiCallable[Any, Any]:
    return channel.stream_stream(
        REGISTER,
        request_serializer=mesh_pb2.RegisterRequest.SerializeToString,
        response_deserializer=mesh_pb2.RegisterResponse.FromString,
    )
