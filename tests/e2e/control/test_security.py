"""The control plane's security, end to end over its real ports: join tokens on the
bootstrap port, mutual TLS on the xDS port, registration scoped to the certificate's
service, identity-scoped views, and the operator API's tokens."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest

from gossamer.certs.tokens import TokenStore
from gossamer.contract import grpcio_calls as calls
from gossamer.contract import mesh_pb2, xds
from gossamer.control.server import ControlPlane
from gossamer.errors import AuthorizationDenied
from gossamer.proxy.agent.bootstrap import bootstrap
from tests.helpers.ads_client import AdsClient
from tests.helpers.control_plane import write_mesh
from tests.helpers.grpcio_tls import GRPC_TLS_OPTIONS, mtls_channel_credentials
from tests.helpers.operator_api import api_call

pytestmark = pytest.mark.e2e
TD = "gossamer.local"


def secure_mesh() -> dict[str, object]:
    return {
        "trust_domain": TD,
        "control": {
            "xds_listen": "127.0.0.1:0",
            "bootstrap_listen": "127.0.0.1:0",
            "api_listen": "127.0.0.1:0",
            "lease_ttl": "2s",
        },
        "services": [
            {"name": "web", "ports": [{"port": 8080, "protocol": "http"}]},
            {
                "name": "catalog",
                "ports": [{"port": 8080, "protocol": "http"}],
                "authorization": {"allow": [f"spiffe://{TD}/ns/default/sa/web"]},
            },
        ],
    }


@pytest.fixture
async def plane(tmp_path: Path):
    config = tmp_path / "mesh.yaml"
    write_mesh(config, secure_mesh())
    control = ControlPlane(config, reload_interval=3600)
    await control.start()
    yield control
    await control.stop(grace=0.2)


def token_for(plane: ControlPlane, service: str, ttl: float = 600.0) -> str:
    assert plane.security is not None
    ca = plane.security.ca.get()
    token, _ = TokenStore(plane.mesh.control.ca_dir).create(service, ca.root_pin(), ttl=ttl)
    return token


async def certify(plane: ControlPlane, service: str):
    token = token_for(plane, service)
    return await bootstrap(
        "127.0.0.1", plane.bound_port("bootstrap"), token, service, "default", TD
    )


def xds_target(plane: ControlPlane) -> str:
    return f"127.0.0.1:{plane.bound_port('xds')}"


async def test_bootstrap_refuses_bad_tokens(plane):
    port = plane.bound_port("bootstrap")
    with pytest.raises(AuthorizationDenied, match="is for web"):
        await bootstrap("127.0.0.1", port, token_for(plane, "web"), "catalog", "default", TD)
    expired = token_for(plane, "web", ttl=0.001)
    await asyncio.sleep(0.01)
    with pytest.raises(AuthorizationDenied, match="expired"):
        await bootstrap("127.0.0.1", port, expired, "web", "default", TD)
    no_token = grpc.ssl_channel_credentials(plane.security.ca.get().anchor_root_pem())
    async with grpc.aio.secure_channel(
        f"127.0.0.1:{port}", no_token, options=GRPC_TLS_OPTIONS
    ) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await calls.certify(ch)(mesh_pb2.CertifyRequest(csr=b"x", service="web"), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_ads_needs_a_client_certificate(plane):
    creds = await certify(plane, "web")
    server_only = grpc.ssl_channel_credentials(root_certificates=creds.bundle_pem)
    async with AdsClient(
        xds_target(plane), "web-1", credentials=server_only, options=GRPC_TLS_OPTIONS
    ) as client:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await client.request(xds.CLUSTER)
            await client.recv(timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert plane.registry.streams() == []


async def test_identity_decides_the_view_and_claims_are_checked(plane):
    creds = await certify(plane, "web")
    mtls = mtls_channel_credentials(creds)
    async with AdsClient(
        xds_target(plane), "web-1", credentials=mtls, options=GRPC_TLS_OPTIONS
    ) as client:
        await client.request(xds.LISTENER)
        listeners = client.decode(await client.recv(timeout=5))
        assert "inbound" in listeners  # web's own inbound side, because the cert says web
        [info] = plane.registry.streams()
        assert info.identity == f"spiffe://{TD}/ns/default/sa/web"
        assert info.cert_not_after is not None
    # claiming to be catalog in node metadata with web's certificate is refused
    async with AdsClient(
        xds_target(plane),
        "x",
        {"GOSSAMER_SERVICE": "catalog"},
        credentials=mtls,
        options=GRPC_TLS_OPTIONS,
    ) as liar:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await liar.request(xds.CLUSTER)
            await liar.recv(timeout=5)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def register_stream(channel, instance: mesh_pb2.Instance):
    call = calls.register(channel)()
    await call.write(mesh_pb2.RegisterRequest(instance=instance))
    return call


async def test_registration_lives_with_the_stream_and_is_scoped(plane):
    creds = await certify(plane, "catalog")
    async with grpc.aio.secure_channel(
        xds_target(plane), mtls_channel_credentials(creds), GRPC_TLS_OPTIONS
    ) as ch:
        # another service's endpoint: refused
        call = await register_stream(
            ch, mesh_pb2.Instance(instance_id="evil", port=15006, service="web")
        )
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call.read()
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        # its own: registered, visible in the registry with mTLS and the admin port
        call = await register_stream(
            ch, mesh_pb2.Instance(instance_id="c1", port=15006, admin_port=15000, zone="a")
        )
        reply = await call.read()
        assert reply.status == "registered"
        state = await plane.link.settle()
        [endpoint] = [e for e in state.endpoints.values() if e.instance_id == "c1"]
        assert (
            str(endpoint.service) == "catalog.default"
            and endpoint.mtls
            and endpoint.address == "127.0.0.1"
        )
        assert endpoint.owner.startswith("lease:")
        await call.write(mesh_pb2.RegisterRequest(health="draining"))
        assert (await call.read()).status == "updated"
        state = await plane.link.settle()
        assert state.endpoints[(endpoint.service, "c1")].health.value == "draining"
        # the stream ends: the endpoint leaves the registry
        call.cancel()
    for _ in range(100):
        state = await plane.link.settle()
        if not any(e.instance_id == "c1" for e in state.endpoints.values()):
            break
        await asyncio.sleep(0.05)
    assert not any(e.instance_id == "c1" for e in state.endpoints.values())


async def test_registration_needs_mtls(plane):
    root = plane.security.ca.get().anchor_root_pem()
    async with grpc.aio.secure_channel(
        f"127.0.0.1:{plane.bound_port('bootstrap')}",
        grpc.ssl_channel_credentials(root),
        GRPC_TLS_OPTIONS,
    ) as ch:
        call = await register_stream(ch, mesh_pb2.Instance(instance_id="c1", port=15006))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call.read()
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED  # not served on that port


def api_get(
    plane: ControlPlane, path: str, token: str | None = None, method: str = "GET", body=None
):
    return api_call(plane.bound_port("api"), path, token, method, body)


async def test_operator_api_tokens_and_roles(plane):
    admin = (plane.mesh.control.data_dir / "admin-token").read_text().strip()
    assert (await asyncio.to_thread(api_get, plane, "/v1/services"))[0] == 401
    status, created = await asyncio.to_thread(
        api_get, plane, "/v1/api-tokens", admin, "POST", {"name": "ci", "role": "viewer"}
    )
    assert status == 201
    viewer = created["token"]
    status, services = await asyncio.to_thread(api_get, plane, "/v1/services", viewer)
    assert status == 200 and {s["name"] for s in services["services"]} == {"web", "catalog"}
    status, _ = await asyncio.to_thread(
        api_get, plane, "/v1/tokens", viewer, "POST", {"service": "web"}
    )
    assert status == 403
    status, join = await asyncio.to_thread(
        api_get, plane, "/v1/tokens", admin, "POST", {"service": "web"}
    )
    assert status == 201
    # the token the API made bootstraps a sidecar
    creds = await bootstrap(
        "127.0.0.1", plane.bound_port("bootstrap"), join["token"], "web", "default", TD
    )
    assert creds.spiffe_id.endswith("/sa/web")

    def fetch_metrics() -> str:
        url = f"http://127.0.0.1:{plane.bound_port('api')}/metrics"
        with urllib.request.urlopen(url, timeout=5) as r:
            return str(r.read().decode())

    text = await asyncio.to_thread(fetch_metrics)
    assert "gossamer_control_certificates_issued_total 1.0" in text
    assert "gossamer_control_services 2.0" in text


async def run_cli(*args: str) -> tuple[int, str, str]:
    import sys

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gossamer.cli.main",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_gossamer_status_shows_acks_and_nacks(plane):
    creds = await certify(plane, "web")
    api = f"http://127.0.0.1:{plane.bound_port('api')}"
    admin = (plane.mesh.control.data_dir / "admin-token").read_text().strip()
    async with AdsClient(
        xds_target(plane),
        "web-7",
        credentials=mtls_channel_credentials(creds),
        options=GRPC_TLS_OPTIONS,
    ) as client:
        await client.request(xds.CLUSTER)
        clusters = await client.recv(timeout=5)
        await client.ack(clusters)
        await client.request(xds.LISTENER)
        listeners = await client.recv(type_url=xds.LISTENER, timeout=5)
        await client.nack(listeners, "listener inbound: unsupported filter")
        await asyncio.sleep(0.2)
        code, out, err = await run_cli("status", "--api", api, "--token", admin, "-o", "json")
        assert code == 0, err
        [row] = json.loads(out)["sidecars"]
        assert row["node_id"] == "web-7" and row["identity"].endswith("/sa/web")
        assert row["types"]["CDS"]["acked_version"] == clusters.version_info
        assert row["types"]["LDS"]["last_nack"]["error"] == "listener inbound: unsupported filter"
        assert 0 < row["cert_seconds_left"] <= 86400
        code, out, err = await run_cli("status", "--api", api, "--token", admin)
        assert code == 0 and "web-7" in out and "NACK" in out and "unsupported filter" in out
    code, _out, err = await run_cli("status", "--api", api, "--token", "gsa1_wrong")
    assert code == 1 and "refused" in err and "Traceback" not in err
    code, _out, err = await run_cli("status", "--api", "http://127.0.0.1:1")
    assert code == 1 and "cannot reach the control plane" in err
