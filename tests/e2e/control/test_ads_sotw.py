"""State-of-the-world ADS over a real gRPC connection to an in-process control plane."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from gossamer.contract import xds
from tests.helpers.ads_client import AdsClient
from tests.helpers.control_plane import mesh, reload_now, running_control_plane

pytestmark = pytest.mark.e2e

SIDECAR = {"GOSSAMER_SERVICE": "web"}


def services(
    *,
    echo_lb: str = "round_robin",
    extra: list[dict[str, Any]] | None = None,
    echo_endpoints: int = 2,
):
    return [
        {"name": "web", "ports": [{"port": 8080, "protocol": "http"}]},
        {
            "name": "echo",
            "ports": [{"port": 50051, "protocol": "grpc"}],
            "lb_policy": echo_lb,
            "endpoints": [
                {"address": "127.0.0.1", "port": 7000 + i, "zone": "z1"}
                for i in range(echo_endpoints)
            ],
        },
        *(extra or []),
    ]


ECHO = "outbound|50051||echo.default"
WEB = "outbound|8080||web.default"


async def test_wildcard_cds_ack_then_nothing_more(tmp_path):
    async with (
        running_control_plane(tmp_path, mesh(services())) as (plane, target),
        AdsClient(target, "n1", SIDECAR) as client,
    ):
        await client.request(xds.CLUSTER)
        resp = await client.recv()
        clusters = client.decode(resp)
        assert {ECHO, WEB, xds.PASSTHROUGH_CLUSTER} <= set(clusters)
        assert resp.version_info and resp.nonce
        await client.ack(resp)
        await client.expect_silence(0.3)
        [info] = plane.registry.streams()
        assert info.node_id == "n1" and info.group == "sidecar:default/web"
        assert info.types[xds.CLUSTER].acked_version == resp.version_info
        assert info.types[xds.CLUSTER].wildcard


async def test_nack_keeps_last_good_version_and_records_the_error(tmp_path):
    config = tmp_path / "mesh.yaml"
    async with (
        running_control_plane(tmp_path, mesh(services())) as (plane, target),
        AdsClient(target, "n1", SIDECAR) as client,
    ):
        await client.request(xds.CLUSTER)
        first = await client.recv()
        await client.ack(first)
        await reload_now(plane, config, mesh(services(echo_lb="least_request")))
        second = await client.recv()
        assert second.version_info != first.version_info
        await client.nack(second, "unsupported lb policy", version=first.version_info)
        await client.expect_silence(0.3)  # a NACK is not answered by resending
        state = plane.registry.streams()[0].types[xds.CLUSTER]
        assert state.acked_version == first.version_info
        assert state.last_nack is not None
        assert state.last_nack.version == second.version_info
        assert state.last_nack.error == "unsupported lb policy"
        assert plane.registry.last_nack("n1", xds.CLUSTER) == state.last_nack
        # the next change is pushed and ACKed; the NACK stays on record
        await reload_now(plane, config, mesh(services(echo_lb="random")))
        third = await client.recv()
        await client.ack(third)
        await client.expect_silence(0.2)
        state = plane.registry.streams()[0].types[xds.CLUSTER]
        assert state.acked_version == third.version_info
        assert state.last_nack is not None and state.last_nack.version == second.version_info
        assert plane.registry.nacks()["n1"]["CDS"]["error"] == "unsupported lb policy"


async def test_stale_nonce_is_ignored(tmp_path):
    config = tmp_path / "mesh.yaml"
    async with (
        running_control_plane(tmp_path, mesh(services())) as (plane, target),
        AdsClient(target, "n1", SIDECAR) as client,
    ):
        await client.request(xds.CLUSTER)
        first = await client.recv()
        await reload_now(plane, config, mesh(services(echo_lb="least_request")))
        second = await client.recv()  # sent before the client answered `first`
        # A request with the older nonce that would narrow the subscription to ECHO:
        # applied, it would trigger a response holding only ECHO. It must be ignored.
        await client.ack(first, [ECHO])
        await client.expect_silence(0.3)
        info = plane.registry.streams()[0]
        assert info.stale_nonces == 1
        await client.ack(second)
        await client.expect_silence(0.2)
        assert info.types[xds.CLUSTER].acked_version == second.version_info
        # still a wildcard subscription: the next push carries every cluster
        await reload_now(plane, config, mesh(services(echo_lb="random")))
        third = await client.recv()
        assert {ECHO, WEB, xds.PASSTHROUGH_CLUSTER} <= set(client.decode(third))


async def test_requested_before_it_exists_is_sent_when_it_appears(tmp_path):
    config = tmp_path / "mesh.yaml"
    late = "outbound|9000||late.default"
    async with (
        running_control_plane(tmp_path, mesh(services())) as (plane, target),
        AdsClient(target, "grpc-client") as client,  # proxyless
    ):
        await client.request(xds.ENDPOINT, [late])
        await client.request(xds.LISTENER, ["late:9000"])
        await client.expect_silence(0.3)
        extra = [
            {
                "name": "late",
                "ports": [{"port": 9000, "protocol": "grpc"}],
                "endpoints": [{"address": "127.0.0.1", "port": 7100}],
            }
        ]
        await reload_now(plane, config, mesh(services(extra=extra)))
        eds = await client.recv(type_url=xds.ENDPOINT)
        assert set(client.decode(eds)) == {late}
        lds = await client.recv(type_url=xds.LISTENER)
        listener = client.decode(lds)["late:9000"]
        assert listener.HasField("api_listener")


async def test_named_subscription_sends_only_new_names(tmp_path):
    async with (
        running_control_plane(tmp_path, mesh(services())) as (_plane, target),
        AdsClient(target, "n1", SIDECAR) as client,
    ):
        await client.request(xds.ENDPOINT, [ECHO])
        first = await client.recv()
        assert set(client.decode(first)) == {ECHO}
        await client.ack(first, [ECHO, WEB])  # ACK that also subscribes to WEB
        second = await client.recv()
        assert set(client.decode(second)) == {WEB}
        await client.ack(second, [ECHO, WEB])
        await client.expect_silence(0.3)
        # unsubscribe from ECHO, subscribe again: it must be sent again
        await client.ack(second, [WEB])
        await client.expect_silence(0.2)
        await client.ack(second, [WEB, ECHO])
        third = await client.recv()
        assert set(client.decode(third)) == {ECHO}


async def test_endpoint_change_pushes_only_eds_and_in_order(tmp_path):
    config = tmp_path / "mesh.yaml"
    async with (
        running_control_plane(tmp_path, mesh(services())) as (plane, target),
        AdsClient(target, "n1", SIDECAR) as client,
    ):
        for type_url, wanted in (
            (xds.CLUSTER, []),
            (xds.ENDPOINT, [ECHO, WEB]),
            (xds.LISTENER, []),
            (xds.ROUTE, [xds.OUTBOUND_ROUTE]),
        ):
            await client.request(type_url, wanted)
            await client.ack(await client.recv(type_url=type_url), wanted)
        await client.expect_silence(0.3)
        await reload_now(plane, config, mesh(services(echo_endpoints=3)))
        eds = await client.recv()
        assert eds.type_url == xds.ENDPOINT
        assert set(client.decode(eds)) == {ECHO}  # WEB did not change
        await client.ack(eds, [ECHO, WEB])
        await client.expect_silence(0.3)
        # new services and a changed endpoint set change every type at once;
        # make before break: CDS, EDS, LDS, RDS
        extra = [
            {"name": "shop", "ports": [{"port": 8081, "protocol": "http"}]},
            {"name": "db", "ports": [{"port": 5432, "protocol": "tcp"}]},
        ]
        await reload_now(plane, config, mesh(services(echo_endpoints=4, extra=extra)))
        order = [(await client.recv()).type_url for _ in range(4)]
        assert order == [xds.CLUSTER, xds.ENDPOINT, xds.LISTENER, xds.ROUTE]


async def test_reconnect_at_current_version_gets_no_resend(tmp_path):
    async with running_control_plane(tmp_path, mesh(services())) as (_plane, target):
        client = AdsClient(target, "n1", SIDECAR)
        await client.connect()
        try:
            await client.request(xds.CLUSTER)
            resp = await client.recv()
            await client.ack(resp)
            await client.reconnect()
            await client.request(xds.CLUSTER, version=resp.version_info)
            await client.expect_silence(0.3)
            # an out-of-date version on a new stream gets the current state
            await client.reconnect()
            await client.request(xds.CLUSTER, version="stale-version")
            again = await client.recv()
            assert again.version_info == resp.version_info
        finally:
            await client.close()


async def test_sidecar_sees_only_services_it_may_call(tmp_path):
    extra = [
        {
            "name": "vault",
            "ports": [{"port": 8200, "protocol": "http"}],
            "authorization": {"allow": ["spiffe://gossamer.local/ns/default/sa/admin"]},
        }
    ]
    async with (
        running_control_plane(tmp_path, mesh(services(extra=extra))) as (_plane, target),
        AdsClient(target, "web-1", SIDECAR) as web,
        AdsClient(target, "admin-1", {"GOSSAMER_SERVICE": "admin"}) as admin,
    ):
        await web.request(xds.CLUSTER)
        await admin.request(xds.CLUSTER)
        assert "outbound|8200||vault.default" not in web.decode(await web.recv())
        assert "outbound|8200||vault.default" in admin.decode(await admin.recv())
        await web.request(xds.ROUTE, [xds.OUTBOUND_ROUTE])
        routes = web.decode(await web.recv(type_url=xds.ROUTE))[xds.OUTBOUND_ROUTE]
        assert not [h for h in routes.virtual_hosts if h.name.startswith("vault.")]


async def test_first_request_without_node_is_refused(tmp_path):
    async with running_control_plane(tmp_path, mesh(services())) as (plane, target):
        client = AdsClient(target, "")
        await client.connect()
        try:
            await client.request(xds.CLUSTER)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await client.recv()
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "node" in info.value.details()
        finally:
            await client.close()
        assert len(plane.registry) == 0


async def test_status_reports_snapshots_and_streams(tmp_path):
    async with (
        running_control_plane(tmp_path, mesh(services())) as (plane, target),
        AdsClient(target, "n1", SIDECAR) as client,
    ):
        await client.request(xds.CLUSTER)
        response = await client.recv()
        await client.ack(response, [])
        await client.expect_silence(0.2)
        status = plane.status()
        assert status["config"]["trust_domain"] == "gossamer.local"
        assert status["config"]["last_error"] is None
        assert status["snapshots"]["sidecar:default/web"]["CDS"]["version"] == response.version_info
        [stream] = status["streams"]
        assert (
            stream["node_id"] == "n1"
            and stream["types"]["CDS"]["acked_version"] == response.version_info
        )
        assert status["ports"]["insecure_xds"] == int(target.rsplit(":", 1)[1])


async def test_extra_servicers_share_the_port(tmp_path):
    def ping(request: bytes, context: object) -> bytes:
        return b"pong:" + request

    def register(server: grpc.aio.Server) -> None:
        handler = grpc.method_handlers_generic_handler(
            "test.Ping", {"Ping": grpc.unary_unary_rpc_method_handler(ping)}
        )
        server.add_generic_rpc_handlers((handler,))

    async with (
        running_control_plane(tmp_path, mesh(services()), servicers=[register]) as (
            _,
            target,
        ),
        grpc.aio.insecure_channel(target) as channel,
    ):
        assert await channel.unary_unary("/test.Ping/Ping")(b"x") == b"pong:x"
