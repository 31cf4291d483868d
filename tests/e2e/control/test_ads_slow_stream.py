"""A stream whose client stops reading blocks nobody and receives only the latest state.

The slow client subscribes to a ~60 KB ClusterLoadAssignment and stops reading, so
HTTP/2 flow control soon stalls the server's writes to it. Meanwhile every change must
still reach a second, healthy client; when the slow one reads again it gets the newest
version, not a backlog (one coalesced pending snapshot per stream).
"""

from __future__ import annotations

import asyncio

import grpc
import pytest
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from gossamer.contract import xds
from gossamer.contract.identity import ServiceKey
from gossamer.discovery.model import Endpoint, RegistryState, Service, ServicePort
from tests.helpers.ads_client import AdsClient, make_node
from tests.helpers.control_plane import mesh, running_control_plane

pytestmark = pytest.mark.e2e

KEY = ServiceKey("default", "big")
BIG = "outbound|8080||big.default"
CHANGES = 8


def big_state(change: int, endpoints: int = 2000) -> RegistryState:
    service = Service("big", ports=(ServicePort(8080),))
    members = {}
    for i in range(endpoints):
        port = 30000 + change if i == 0 else 8000 + i % 1000
        address = f"10.{i // 60000}.{(i // 250) % 240}.{i % 250 + 1}"
        members[(KEY, f"e{i}")] = Endpoint(KEY, f"e{i}", address, port)
    return RegistryState(change + 1, {KEY: service}, members)


def marker_port(response: discovery_pb2.DiscoveryResponse) -> int:
    cla = AdsClient.decode(response)[BIG]
    return max(  # type: ignore[no-any-return]
        e.endpoint.address.socket_address.port_value
        for loc in cla.endpoints
        for e in loc.lb_endpoints
    )


async def test_slow_reader_blocks_nobody_and_gets_the_latest(tmp_path):
    async with running_control_plane(tmp_path, mesh([])) as (plane, target):
        plane.publisher.set_state(big_state(0))
        plane.publisher.publish()
        channel = grpc.aio.insecure_channel(target, options=[("grpc.http2.bdp_probe", 0)])
        slow = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources()
        try:
            await slow.write(
                discovery_pb2.DiscoveryRequest(
                    node=make_node("slow"), type_url=xds.ENDPOINT, resource_names=[BIG]
                )
            )
            async with AdsClient(target, "fast") as fast:
                await fast.request(xds.ENDPOINT, [BIG])
                await fast.ack(await fast.recv(), [BIG])
                for change in range(1, CHANGES + 1):
                    plane.publisher.set_state(big_state(change))
                    plane.publisher.publish()
                    response = await fast.recv(timeout=10)
                    assert marker_port(response) == 30000 + change
                    await fast.ack(response, [BIG])
            [info] = [s for s in plane.registry.streams() if s.node_id == "slow"]
            # the slow stream's writer is stuck in flow control with at most a couple sent
            assert info.types[xds.ENDPOINT].responses < CHANGES
            received = []
            while True:
                try:
                    response = await asyncio.wait_for(slow.read(), 2.0)
                except TimeoutError:
                    break
                received.append(response)
                await slow.write(
                    discovery_pb2.DiscoveryRequest(
                        type_url=xds.ENDPOINT,
                        resource_names=[BIG],
                        version_info=response.version_info,
                        response_nonce=response.nonce,
                    )
                )
            assert 1 < len(received) < CHANGES  # a backlog would be CHANGES + 1 responses
            assert marker_port(received[-1]) == 30000 + CHANGES
            assert info.types[xds.ENDPOINT].acked_version == received[-1].version_info
        finally:
            slow.cancel()
            await channel.close()
