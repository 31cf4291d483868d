"""A small xDS test client over a real gRPC connection: SotW and delta ADS streams.

    async with AdsClient(target, node_id="n1", metadata={"GOSSAMER_SERVICE": "web"}) as c:
        await c.request(CLUSTER)                 # wildcard (no names)
        resp = await c.recv()                    # DiscoveryResponse
        await c.ack(resp)                        # ACK (version + nonce)
        await c.nack(resp, "bad cluster")        # or NACK with error_detail
        await c.expect_silence(0.3)              # nothing arrives meanwhile
        c.decode(resp)                           # name -> unpacked message

`DeltaAdsClient` does the same for DeltaAggregatedResources (subscribe, unsubscribe,
initial_resource_versions). Both keep the raw call so tests can inspect or cancel it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import struct_pb2
from google.rpc import status_pb2

from gossamer.contract import xds

MESSAGE_TYPES: dict[str, Any] = {
    xds.CLUSTER: cluster_pb2.Cluster,
    xds.ENDPOINT: endpoint_pb2.ClusterLoadAssignment,
    xds.LISTENER: listener_pb2.Listener,
    xds.ROUTE: route_pb2.RouteConfiguration,
    xds.SECRET: secret_pb2.Secret,
}


def make_node(node_id: str, metadata: Mapping[str, str] | None = None) -> base_pb2.Node:
    node = base_pb2.Node(id=node_id, user_agent_name="gossamer-test")
    if metadata:
        node.metadata.CopyFrom(struct_pb2.Struct())
        node.metadata.update(dict(metadata))
    return node


def unpack(any_msg: Any, type_url: str) -> Any:
    message = MESSAGE_TYPES[type_url]()
    if not any_msg.Unpack(message):
        raise AssertionError(f"resource is {any_msg.type_url}, not {type_url}")
    return message


class _BaseClient:
    method = ""

    def __init__(
        self,
        target: str,
        node_id: str = "test-node",
        metadata: Mapping[str, str] | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        options: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.target = target
        self.credentials = credentials
        self.options = options
        self.node = make_node(node_id, metadata)
        self._sent_node = False
        self.channel: grpc.aio.Channel | None = None
        self.call: Any = None
        self.received: list[Any] = []
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Any:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        if self.credentials is None:
            self.channel = grpc.aio.insecure_channel(self.target)
        else:
            self.channel = grpc.aio.secure_channel(self.target, self.credentials, self.options)
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(self.channel)
        self.call = getattr(stub, self.method)()
        self._sent_node = False
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            while True:
                response = await self.call.read()
                if response is grpc.aio.EOF:
                    break
                self.received.append(response)
                await self._queue.put(response)
        except grpc.aio.AioRpcError as exc:
            await self._queue.put(exc)
        except asyncio.CancelledError:
            pass

    async def close(self) -> None:
        if self.call is not None:
            self.call.cancel()
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except asyncio.CancelledError:
                pass
        if self.channel is not None:
            await self.channel.close()
        self.call = self.channel = self._reader = None

    async def reconnect(self) -> None:
        await self.close()
        self._queue = asyncio.Queue()
        await self.connect()

    def _with_node(self, request: Any) -> Any:
        if not self._sent_node:
            request.node.CopyFrom(self.node)
            self._sent_node = True
        return request

    async def recv(self, timeout: float = 5.0, type_url: str | None = None) -> Any:
        """The next response (of `type_url`, skipping others if given)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError(f"no response of type {type_url or 'any'} within {timeout}s")
            try:
                item = await asyncio.wait_for(self._queue.get(), remaining)
            except TimeoutError:
                raise TimeoutError(
                    f"no response of type {type_url or 'any'} within {timeout}s"
                ) from None
            if isinstance(item, Exception):
                raise item
            if type_url is None or item.type_url == type_url:
                return item

    async def expect_silence(self, seconds: float = 0.3) -> None:
        """Assert that no response arrives for `seconds` (a bounded negative check)."""
        try:
            item = await asyncio.wait_for(self._queue.get(), seconds)
        except TimeoutError:
            return
        raise AssertionError(f"expected no response, got {item}")

    @staticmethod
    def error(message: str) -> status_pb2.Status:
        return status_pb2.Status(code=3, message=message)


class AdsClient(_BaseClient):
    """State of the world: `StreamAggregatedResources`."""

    method = "StreamAggregatedResources"

    async def request(
        self,
        type_url: str,
        names_: Iterable[str] = (),
        *,
        version: str = "",
        nonce: str = "",
        error: str | None = None,
    ) -> None:
        request = discovery_pb2.DiscoveryRequest(
            type_url=type_url,
            resource_names=list(names_),
            version_info=version,
            response_nonce=nonce,
        )
        if error is not None:
            request.error_detail.CopyFrom(self.error(error))
        await self.call.write(self._with_node(request))

    async def ack(self, response: Any, names_: Iterable[str] = ()) -> None:
        await self.request(
            response.type_url, names_, version=response.version_info, nonce=response.nonce
        )

    async def nack(
        self, response: Any, message: str, *, version: str = "", names_: Iterable[str] = ()
    ) -> None:
        await self.request(
            response.type_url, names_, version=version, nonce=response.nonce, error=message
        )

    @staticmethod
    def decode(response: Any) -> dict[str, Any]:
        out = {}
        for item in response.resources:
            message = unpack(item, response.type_url)
            out[message.cluster_name if response.type_url == xds.ENDPOINT else message.name] = (
                message
            )
        return out


class DeltaAdsClient(_BaseClient):
    """Incremental: `DeltaAggregatedResources`."""

    method = "DeltaAggregatedResources"

    async def request(
        self,
        type_url: str,
        subscribe: Iterable[str] = (),
        unsubscribe: Iterable[str] = (),
        *,
        initial_versions: Mapping[str, str] | None = None,
        nonce: str = "",
        error: str | None = None,
    ) -> None:
        request = discovery_pb2.DeltaDiscoveryRequest(
            type_url=type_url,
            resource_names_subscribe=list(subscribe),
            resource_names_unsubscribe=list(unsubscribe),
            initial_resource_versions=dict(initial_versions or {}),
            response_nonce=nonce,
        )
        if error is not None:
            request.error_detail.CopyFrom(self.error(error))
        await self.call.write(self._with_node(request))

    async def ack(self, response: Any) -> None:
        await self.request(response.type_url, nonce=response.nonce)

    async def nack(self, response: Any, message: str) -> None:
        await self.request(response.type_url, nonce=response.nonce, error=message)

    @staticmethod
    def versions(response: Any) -> dict[str, str]:
        return {r.name: r.version for r in response.resources}

    @staticmethod
    def decode(response: Any) -> dict[str, Any]:
        return {r.name: unpack(r.resource, response.type_url) for r in response.resources}
