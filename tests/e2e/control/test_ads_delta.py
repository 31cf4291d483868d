"""Incremental (delta) ADS over a real gRPC connection to an in-process control plane."""

from __future__ import annotations

import pytest

from gossamer.contract import xds
from tests.helpers.ads_client import DeltaAdsClient
from tests.helpers.control_plane import mesh, reload_now, running_control_plane

pytestmark = pytest.mark.e2e

SIDECAR = {"GOSSAMER_SERVICE": "web"}
ECHO = "outbound|50051||echo.default"
WEB = "outbound|8080||web.default"
SHOP = "outbound|8081||shop.default"


def services(*, echo_endpoints: int = 2, shop: bool = False):
    out = [
        {"name": "web", "ports": [{"port": 8080}]},
        {
            "name": "echo",
            "ports": [{"port": 50051, "protocol": "grpc"}],
            "endpoints": [
                {"address": "127.0.0.1", "port": 7000 + i} for i in range(echo_endpoints)
            ],
        },
    ]
    if shop:
        out.append({"name": "shop", "ports": [{"port": 8081}]})
    return out


async def test_wildcard_subscription_ack_and_removal(tmp_path):
    config = tmp_path / "mesh.yaml"
    async with (
        running_control_plane(tmp_path, mesh(services(shop=True))) as (plane, target),
        DeltaAdsClient(target, "d1", SIDECAR) as client,
    ):
        await client.request(xds.CLUSTER)  # legacy wildcard: subscribes to nothing
        first = await client.recv()
        assert {ECHO, WEB, SHOP, xds.PASSTHROUGH_CLUSTER} <= set(client.decode(first))
        assert all(r.version for r in first.resources)
        await client.ack(first)
        await client.expect_silence(0.3)
        info = plane.registry.streams()[0]
        assert info.protocol == "delta"
        assert info.types[xds.CLUSTER].acked_version == first.system_version_info
        await reload_now(plane, config, mesh(services(shop=False)))
        second = await client.recv()
        assert list(second.removed_resources) == [SHOP]
        assert not second.resources  # nothing else changed


async def test_subscribe_unsubscribe_and_resubscribe(tmp_path):
    config = tmp_path / "mesh.yaml"
    async with (
        running_control_plane(tmp_path, mesh(services())) as (plane, target),
        DeltaAdsClient(target, "d1", SIDECAR) as client,
    ):
        await client.request(xds.ENDPOINT, [ECHO])
        first = await client.recv()
        assert set(client.decode(first)) == {ECHO}
        await client.ack(first)
        await client.request(xds.ENDPOINT, [WEB])
        second = await client.recv()
        assert set(client.decode(second)) == {WEB}  # ECHO is not resent
        await client.ack(second)
        await client.request(xds.ENDPOINT, unsubscribe=[ECHO])
        await client.expect_silence(0.3)
        await reload_now(plane, config, mesh(services(echo_endpoints=3)))
        await client.expect_silence(0.3)  # ECHO changed, but nobody asks for it
        await client.request(xds.ENDPOINT, [ECHO])
        third = await client.recv()
        assert set(client.decode(third)) == {ECHO}
        assert len(client.decode(third)[ECHO].endpoints[0].lb_endpoints) == 3


async def test_requested_absent_is_reported_removed_then_sent_when_created(tmp_path):
    config = tmp_path / "mesh.yaml"
    async with (
        running_control_plane(tmp_path, mesh(services())) as (plane, target),
        DeltaAdsClient(target, "d1", SIDECAR) as client,
    ):
        await client.request(xds.CLUSTER, [SHOP])
        first = await client.recv()
        assert list(first.removed_resources) == [SHOP] and not first.resources
        await client.ack(first)
        await client.expect_silence(0.3)  # reported once
        await reload_now(plane, config, mesh(services(shop=True)))
        second = await client.recv()
        assert set(client.decode(second)) == {SHOP}


async def test_reconnect_with_initial_resource_versions_sends_only_differences(tmp_path):
    config = tmp_path / "mesh.yaml"
    async with running_control_plane(tmp_path, mesh(services())) as (plane, target):
        client = DeltaAdsClient(target, "d1", SIDECAR)
        await client.connect()
        try:
            await client.request(xds.ENDPOINT, [ECHO, WEB])
            first = await client.recv()
            held = client.versions(first)
            assert set(held) == {ECHO, WEB}
            await client.ack(first)
            # same versions: nothing to send
            await client.reconnect()
            await client.request(xds.ENDPOINT, [ECHO, WEB], initial_versions=held)
            await client.expect_silence(0.3)
            # while disconnected ECHO changes: only ECHO comes back
            await client.close()
            await reload_now(plane, config, mesh(services(echo_endpoints=3)))
            await client.reconnect()
            await client.request(xds.ENDPOINT, [ECHO, WEB], initial_versions=held)
            update = await client.recv()
            assert set(client.decode(update)) == {ECHO}
            assert not update.removed_resources
            # a held resource that no longer exists is removed
            await client.reconnect()
            stale = dict(held, **{"outbound|1||gone.default": "abc"})
            await client.request(
                xds.ENDPOINT, [ECHO, WEB, "outbound|1||gone.default"], initial_versions=stale
            )
            again = await client.recv()
            assert set(client.decode(again)) == {ECHO}
            assert list(again.removed_resources) == ["outbound|1||gone.default"]
        finally:
            await client.close()


async def test_nack_is_recorded_and_not_resent(tmp_path):
    config = tmp_path / "mesh.yaml"
    async with (
        running_control_plane(tmp_path, mesh(services())) as (plane, target),
        DeltaAdsClient(target, "d1", SIDECAR) as client,
    ):
        await client.request(xds.ENDPOINT, [ECHO])
        first = await client.recv()
        await client.ack(first)
        await reload_now(plane, config, mesh(services(echo_endpoints=3)))
        second = await client.recv()
        await client.nack(second, "endpoint rejected")
        await client.expect_silence(0.3)
        state = plane.registry.streams()[0].types[xds.ENDPOINT]
        assert state.acked_version == first.system_version_info
        assert state.last_nack is not None
        assert (state.last_nack.version, state.last_nack.error) == (
            second.system_version_info,
            "endpoint rejected",
        )


async def test_unsubscribing_a_name_covered_by_the_wildcard_resends_it(tmp_path):
    async with (
        running_control_plane(tmp_path, mesh(services())) as (_plane, target),
        DeltaAdsClient(target, "d1", SIDECAR) as client,
    ):
        await client.request(xds.CLUSTER, ["*", ECHO])
        first = await client.recv()
        assert ECHO in client.decode(first)
        await client.ack(first)
        await client.request(xds.CLUSTER, unsubscribe=[ECHO, "outbound|1||nope.default"])
        second = await client.recv()
        assert set(client.decode(second)) == {ECHO}  # still covered by "*"
        assert list(second.removed_resources) == ["outbound|1||nope.default"]
