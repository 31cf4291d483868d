"""The operator API over a real HTTP socket: roles, audit, join tokens, http_sd."""

from __future__ import annotations

import json
import stat

import pytest
from aiohttp import ClientSession, web

from gossamer.certs.ca import CertificateAuthority
from gossamer.certs.tokens import TokenStore
from gossamer.contract.identity import ServiceKey, gateway_key
from gossamer.contract.vocabulary import Health
from gossamer.control.api_tokens import ADMIN_TOKEN_FILE, ApiTokenStore
from gossamer.control.audit import AuditLog
from gossamer.control.operator_api import ApiSources, OperatorApi, gateway_rows
from gossamer.control.shared_security import LocalSecurity
from gossamer.discovery.model import Endpoint, RegistryState, Service, ServicePort
from tests.helpers.procs import free_port

KEY = ServiceKey("default", "catalog")
STATE = RegistryState(
    revision=7,
    services={KEY: Service("catalog", ports=(ServicePort(8080, "http"),))},
    endpoints={
        (KEY, "c1"): Endpoint(
            KEY, "c1", "127.0.0.1", 15006, admin_port=15000, metrics_port=15090, mtls=True, zone="a"
        ),
        (KEY, "static"): Endpoint(KEY, "static", "10.0.0.9", 8080),
    },
)


HTTP_SD_OPEN = {"open": False}  # what mesh.yaml's observability.http_sd says, per test


@pytest.fixture
async def api(tmp_path):
    ca = CertificateAuthority.init(tmp_path / "ca", "gossamer.local")
    HTTP_SD_OPEN["open"] = False

    async def state():
        return STATE

    sources = ApiSources(
        registry_state=state,
        sidecars=lambda: [{"node": "catalog~c1", "acked": {"CDS": "v1"}}],
        config_info=lambda: {"version": "abc"},
        ca_pin=ca.root_pin,
        metrics_text=lambda: b"gossamer_up 1\n",
        http_sd_open=lambda: HTTP_SD_OPEN["open"],
    )
    tokens = ApiTokenStore(tmp_path / "data")
    admin = tokens.ensure_admin()
    audit = AuditLog(tmp_path / "data")
    join = LocalSecurity(tmp_path / "ca", tmp_path / "data")
    server = OperatorApi(sources, tokens, join, audit)
    runner = web.AppRunner(server.app())
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    async with ClientSession(base_url=f"http://127.0.0.1:{port}") as session:
        yield session, admin, tokens, audit, tmp_path
    await runner.cleanup()


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


async def test_admin_token_file_is_private(api):
    _session, admin, tokens, _audit, tmp = api
    path = tmp / "data" / ADMIN_TOKEN_FILE
    assert path.read_text().strip() == admin
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert tokens.ensure_admin() is None  # only once
    assert admin not in (tmp / "data" / "api-tokens.json").read_text()


async def test_no_or_bad_token_refused(api):
    session, *_ = api
    for headers in ({}, bearer("gsa1_wrong"), {"Authorization": "Basic x"}):
        async with session.get("/v1/services", headers=headers) as r:
            assert r.status == 401


async def test_reads_for_viewer(api):
    session, _admin, tokens, *_ = api
    viewer = tokens.create("ci", "viewer")
    async with session.get("/v1/services", headers=bearer(viewer)) as r:
        body = await r.json()
    assert r.status == 200 and body["revision"] == 7
    assert body["services"][0]["name"] == "catalog" and body["services"][0]["endpoints"] == 2
    async with session.get("/v1/endpoints?service=catalog", headers=bearer(viewer)) as r:
        assert len((await r.json())["endpoints"]) == 2
    async with session.get("/v1/sidecars", headers=bearer(viewer)) as r:
        assert (await r.json())["sidecars"][0]["node"] == "catalog~c1"


def test_gateway_rows_count_their_nodes_instances():
    gateway = gateway_key()
    eps = [
        Endpoint(KEY, "c1", "10.0.1.5", 15006, node="n1", mtls=True),
        Endpoint(KEY, "c2", "10.0.1.6", 15006, node="n1", mtls=True, health=Health.DRAINING),
        Endpoint(KEY, "c3", "10.0.2.5", 15006, node="n2", mtls=True),
        Endpoint(gateway, "n1-gateway", "10.0.1.1", 15443, node="n1", zone="a", mtls=True),
    ]
    state = RegistryState(1, {}, {(e.service, e.instance_id): e for e in eps})
    assert gateway_rows(state) == [
        {"node": "n1", "zone": "a", "address": "10.0.1.1", "port": 15443,
         "instance_id": "n1-gateway", "health": "healthy", "instances": 2,
         "healthy_instances": 1},
    ]  # fmt: skip


async def test_gateways_for_viewer(api):
    session, _admin, tokens, *_ = api
    viewer = tokens.create("ci", "viewer")
    async with session.get("/v1/gateways", headers=bearer(viewer)) as r:
        assert r.status == 200 and (await r.json()) == {"revision": 7, "gateways": []}


async def test_viewer_cannot_write_and_it_is_audited(api):
    session, _admin, tokens, audit, _ = api
    viewer = tokens.create("ci", "viewer")
    async with session.post("/v1/tokens", headers=bearer(viewer), json={"service": "web"}) as r:
        assert r.status == 403
    async with session.get("/v1/tokens", headers=bearer(viewer)) as r:
        assert r.status == 403
    assert audit.tail()[-1]["outcome"] == "denied" and audit.tail()[-1]["who"] == "ci"


async def test_operator_manages_join_tokens(api):
    session, _admin, tokens, audit, tmp = api
    operator = tokens.create("ops", "operator")
    async with session.post(
        "/v1/tokens", headers=bearer(operator), json={"service": "web", "ttl": "10m"}
    ) as r:
        assert r.status == 201
        created = await r.json()
    assert created["token"].startswith("gst1.") and created["service"] == "web"
    TokenStore(tmp / "ca").verify(created["token"], service="web")
    async with session.get("/v1/tokens", headers=bearer(operator)) as r:
        listed = await r.json()
    assert created["token"].split(".")[2] not in json.dumps(listed)
    async with session.delete(f"/v1/tokens/{created['id']}", headers=bearer(operator)) as r:
        assert r.status == 200 and (await r.json())["status"] == "revoked"
    async with session.delete("/v1/tokens/00000000", headers=bearer(operator)) as r:
        assert r.status == 404
    async with session.post(
        "/v1/tokens", headers=bearer(operator), json={"service": "Bad_Name"}
    ) as r:
        assert r.status == 400 and "DNS-1123" in (await r.json())["error"]
    async with session.post("/v1/tokens", headers=bearer(operator), data=b"{nope") as r:
        assert r.status == 400
    actions = [(e["who"], e["action"]) for e in audit.tail()]
    assert ("ops", "create join token") in actions and ("ops", "revoke join token") in actions
    assert created["token"] not in (tmp / "data" / "audit.log").read_text()
    # operators cannot manage API tokens
    async with session.post(
        "/v1/api-tokens", headers=bearer(operator), json={"name": "x", "role": "admin"}
    ) as r:
        assert r.status == 403


async def test_admin_manages_api_tokens(api):
    session, admin, *_ = api
    async with session.post(
        "/v1/api-tokens", headers=bearer(admin), json={"name": "grafana", "role": "viewer"}
    ) as r:
        assert r.status == 201
        new = (await r.json())["token"]
    async with session.get("/v1/services", headers=bearer(new)) as r:
        assert r.status == 200
    async with session.post(
        "/v1/api-tokens", headers=bearer(admin), json={"name": "x", "role": "root"}
    ) as r:
        assert r.status == 400
    async with session.delete("/v1/api-tokens/grafana", headers=bearer(admin)) as r:
        assert r.status == 200
    async with session.get("/v1/services", headers=bearer(new)) as r:
        assert r.status == 401
    async with session.get("/v1/audit", headers=bearer(admin)) as r:
        assert any(e["action"] == "delete api token" for e in (await r.json())["entries"])


SD_GROUPS = [
    {
        "targets": ["127.0.0.1:15090"],  # the metrics port, never the admin port
        "labels": {
            "__metrics_path__": "/metrics",
            "gossamer_service": "catalog",
            "gossamer_namespace": "default",
            "gossamer_instance": "c1",
            "gossamer_zone": "a",
        },
    }
]


async def test_http_sd_needs_a_viewer_token_and_refusals_are_audited(api):
    session, admin, tokens, audit, _ = api
    async with session.get("/v1/http_sd") as r:
        assert r.status == 401
        assert "API token is required" in (await r.json())["error"]
    async with session.get("/v1/http_sd", headers=bearer("gsa1_not-a-token")) as r:
        assert r.status == 401
    refused = [e for e in audit.tail(10) if e["action"] == "GET /v1/http_sd"]
    assert len(refused) == 2
    assert all(e["outcome"] == "unauthenticated" and e["status"] == 401 for e in refused)
    viewer = tokens.create("prometheus", "viewer")
    async with session.get("/v1/http_sd", headers=bearer(viewer)) as r:
        assert r.status == 200
        assert await r.json() == SD_GROUPS
    async with session.get("/v1/http_sd", headers=bearer(admin)) as r:
        assert r.status == 200
    async with session.get("/metrics") as r:  # the control plane's own metrics stay open
        assert "gossamer_up 1" in await r.text()


async def test_http_sd_open_mode_needs_no_token(api):
    session, *_ = api
    HTTP_SD_OPEN["open"] = True
    async with session.get("/v1/http_sd") as r:
        assert r.status == 200
        assert await r.json() == SD_GROUPS


async def test_a_token_file_grants_its_role_and_follows_the_file(api):
    session, _admin, tokens, _audit, tmp_path = api
    path = tmp_path / "prometheus-token"
    file_token = tokens.add_file_token("prometheus", "viewer", path)
    secret = "gsa1_" + "a" * 40
    async with session.get("/v1/http_sd", headers=bearer(secret)) as r:
        assert r.status == 401  # no file yet
    assert "cannot read" in (file_token.error or "")
    path.write_text(secret + "\n")
    async with session.get("/v1/http_sd", headers=bearer(secret)) as r:
        assert r.status == 200
    async with session.get("/v1/tokens", headers=bearer(secret)) as r:
        assert r.status == 403  # a viewer, nothing more
    path.write_text("gsa1_" + "b" * 41 + "\n")  # replaced: the old secret stops working
    async with session.get("/v1/http_sd", headers=bearer(secret)) as r:
        assert r.status == 401
    async with session.get("/v1/http_sd", headers=bearer("gsa1_" + "b" * 41)) as r:
        assert r.status == 200
    path.write_text("short\n")
    async with session.get("/v1/http_sd", headers=bearer("short")) as r:
        assert r.status == 401
    assert "fewer than 16" in (file_token.error or "")


async def test_http_sd_and_metrics_are_open_when_configured(api):
    session, *_ = api
    HTTP_SD_OPEN["open"] = True
    async with session.get("/v1/http_sd") as r:
        groups = await r.json()
    assert groups == [
        {
            "targets": ["127.0.0.1:15090"],
            "labels": {
                "__metrics_path__": "/metrics",
                "gossamer_service": "catalog",
                "gossamer_namespace": "default",
                "gossamer_instance": "c1",
                "gossamer_zone": "a",
            },
        }
    ]
    async with session.get("/metrics") as r:
        assert "gossamer_up 1" in await r.text()
