"""Two `gossamer control` processes on one real etcd: identical snapshots, no spurious
updates on reconnect to the other replica, and no registration lost when one dies."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from gossamer.certs.ca import CertificateAuthority
from gossamer.certs.tokens import TokenStore
from gossamer.contract import grpcio_calls as calls
from gossamer.contract import mesh_pb2, xds
from gossamer.proxy.agent.bootstrap import bootstrap
from tests.helpers.ads_client import AdsClient
from tests.helpers.grpcio_tls import GRPC_TLS_OPTIONS, mtls_channel_credentials
from tests.helpers.replicas import Replica

pytestmark = pytest.mark.e2e
TD = "gossamer.local"
TYPES = (xds.CLUSTER, xds.LISTENER, xds.SECRET)


async def versions_seen(target: str, creds, node: str) -> dict[str, str]:
    async with AdsClient(target, node, credentials=creds, options=GRPC_TLS_OPTIONS) as client:
        out = {}
        for type_url in TYPES:
            await client.request(type_url, ["ROOTCA"] if type_url == xds.SECRET else [])
            response = await client.recv(type_url=type_url, timeout=10)
            await client.ack(response, ["ROOTCA"] if type_url == xds.SECRET else [])
            out[type_url] = response.version_info
        await client.request(xds.ENDPOINT, ["outbound|8080||catalog.default"])
        eds = await client.recv(type_url=xds.ENDPOINT, timeout=10)
        out[xds.ENDPOINT] = eds.version_info
        return out


def catalog_instances(eds_response) -> set[int]:
    ports = set()
    for cla in AdsClient.decode(eds_response).values():
        for locality in cla.endpoints:
            for lb in locality.lb_endpoints:
                ports.add(lb.endpoint.address.socket_address.port_value)
    return ports


async def test_two_replicas_share_state_and_survive_one_dying(tmp_path, etcd_server):
    ca_dir = tmp_path / "ca"
    ca = CertificateAuthority.init(ca_dir, TD)
    store = etcd_server.store_url("/ha")
    a, b = Replica(tmp_path, "a", ca_dir, store), Replica(tmp_path, "b", ca_dir, store)
    a.start()
    b.start()
    try:
        tokens = TokenStore(ca_dir)
        web_token, _ = tokens.create("web", ca.root_pin())
        cat_token, _ = tokens.create("catalog", ca.root_pin())
        web = await bootstrap("127.0.0.1", a.ports["bootstrap"], web_token, "web", "default", TD)
        cat = await bootstrap(
            "127.0.0.1", b.ports["bootstrap"], cat_token, "catalog", "default", TD
        )
        web_creds, cat_creds = mtls_channel_credentials(web), mtls_channel_credentials(cat)

        # catalog registers through replica A
        channel_a = grpc.aio.secure_channel(a.xds, cat_creds, GRPC_TLS_OPTIONS)
        reg_a = calls.register(channel_a)()
        instance = mesh_pb2.Instance(instance_id="cat-1", port=15006, zone="z1")
        await reg_a.write(mesh_pb2.RegisterRequest(instance=instance))
        assert (await reg_a.read()).status == "registered"

        # both replicas serve the same versions to web (the endpoint included)
        async def converged() -> tuple[dict[str, str], dict[str, str]]:
            for _ in range(100):
                va = await versions_seen(a.xds, web_creds, "web-1")
                vb = await versions_seen(b.xds, web_creds, "web-1")
                if va == vb:
                    return va, vb
                await asyncio.sleep(0.1)
            return va, vb

        va, vb = await converged()
        assert va == vb and all(va.values())

        # a sidecar that moves from A to B at its current versions gets nothing new
        async with AdsClient(
            b.xds, "web-1", credentials=web_creds, options=GRPC_TLS_OPTIONS
        ) as moved:
            await moved.request(xds.CLUSTER, [], version=va[xds.CLUSTER])
            await moved.expect_silence(1.0)

        # watch B's view of catalog while A is killed and catalog re-registers on B
        async with AdsClient(
            b.xds, "web-2", credentials=web_creds, options=GRPC_TLS_OPTIONS
        ) as watcher:
            await watcher.request(xds.ENDPOINT, ["outbound|8080||catalog.default"])
            first = await watcher.recv(type_url=xds.ENDPOINT, timeout=10)
            await watcher.ack(first, ["outbound|8080||catalog.default"])
            assert catalog_instances(first) == {15006}

            a.kill()
            await channel_a.close(grace=None)
            loop = asyncio.get_running_loop()
            killed_at = loop.time()
            # the sidecar notices and registers on B (its lease on A's side is still live)
            channel_b = grpc.aio.secure_channel(b.xds, cat_creds, GRPC_TLS_OPTIONS)
            reg_b = calls.register(channel_b)()
            await reg_b.write(mesh_pb2.RegisterRequest(instance=instance))
            assert (await reg_b.read()).status == "registered"
            # B's view: any moment without the endpoint must be shorter than the lease
            gone_since: float | None = None
            longest_gap = 0.0
            while loop.time() - killed_at < 6.0:  # past the old lease's 3 s TTL
                try:
                    update = await watcher.recv(type_url=xds.ENDPOINT, timeout=0.5)
                except TimeoutError:
                    continue
                await watcher.ack(update, ["outbound|8080||catalog.default"])
                present = 15006 in catalog_instances(update)
                now = loop.time()
                if not present and gone_since is None:
                    gone_since = now
                elif present and gone_since is not None:
                    longest_gap = max(longest_gap, now - gone_since)
                    gone_since = None
            assert gone_since is None, "the endpoint disappeared from B and did not come back"
            assert longest_gap < 3.0
            reg_b.cancel()
            await channel_b.close(grace=None)
    finally:
        a.stop()
        b.stop()
