"""The gRPC servicer for ADS: `StreamAggregatedResources` (SotW) and
`DeltaAggregatedResources` (delta), both thin wrappers around the stream handlers.

`identify(context)` returns the peer's SPIFFE ID when the port authenticated the client
with mTLS (None on the insecure port), or raises AuthorizationDenied for a caller that
must not be served (a revoked certificate): the call ends with PERMISSION_DENIED before
any resource is sent. Stream errors that are the client's fault end
the call with INVALID_ARGUMENT or PERMISSION_DENIED and one line of detail.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from gossamer.errors import AuthorizationDenied, GossamerError, RemoteProtocolError

from .ads_stream import AdsStream, StreamEnvironment
from .delta import DeltaStream
from .peer import peer_cert_not_after
from .revocations import CUT_MESSAGE, cut_for_revocation
from .sotw import SotwStream

Identify = Callable[[grpc.aio.ServicerContext], str | None]


def no_identity(context: grpc.aio.ServicerContext) -> str | None:
    return None


def status_for(exc: GossamerError) -> grpc.StatusCode:
    if isinstance(exc, AuthorizationDenied):
        return grpc.StatusCode.PERMISSION_DENIED
    if isinstance(exc, RemoteProtocolError):
        return grpc.StatusCode.INVALID_ARGUMENT
    return grpc.StatusCode.INTERNAL


class AdsServicer(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):  # type: ignore[misc]
    def __init__(self, env: StreamEnvironment, identify: Identify = no_identity) -> None:
        self.env = env
        self.identify = identify

    async def _identify(self, context: grpc.aio.ServicerContext) -> str | None:
        try:
            return self.identify(context)
        except AuthorizationDenied as exc:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, exc.message)
            raise AssertionError("unreachable") from None

    async def _serve(
        self,
        stream: AdsStream,  # type: ignore[type-arg]
        requests: AsyncIterator,  # type: ignore[type-arg]
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator:  # type: ignore[type-arg]
        try:
            async for response in stream.run(requests):
                yield response
        except GossamerError as exc:
            await context.abort(status_for(exc), exc.message)
        except asyncio.CancelledError as exc:
            if cut_for_revocation(exc):  # the caller's leaf was revoked meanwhile
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, CUT_MESSAGE)
            raise

    async def StreamAggregatedResources(
        self,
        requests: AsyncIterator[discovery_pb2.DiscoveryRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[discovery_pb2.DiscoveryResponse]:
        identity = await self._identify(context)
        stream = SotwStream(self.env, context.peer(), identity)
        stream.info.cert_not_after = peer_cert_not_after(context)
        async for response in self._serve(stream, requests, context):
            yield response

    async def DeltaAggregatedResources(
        self,
        requests: AsyncIterator[discovery_pb2.DeltaDiscoveryRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[discovery_pb2.DeltaDiscoveryResponse]:
        identity = await self._identify(context)
        stream = DeltaStream(self.env, context.peer(), identity)
        stream.info.cert_not_after = peer_cert_not_after(context)
        async for response in self._serve(stream, requests, context):
            yield response
