"""The observe routes and the dashboard files, on the real API app over a real socket."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import ClientSession

from gossamer.observe.settings import ObservabilitySettings
from tests.helpers.operator_api import operator_api
from tests.helpers.procs import free_port
from tests.helpers.sim_mesh import SimMesh


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def mesh():
    async with SimMesh(fail_every={"catalog": 2}, cert_expires_in={"web": 600}) as m:
        await m.drive(20, concurrency=1)
        yield m


async def test_dashboard_files_are_served(tmp_path, mesh):
    async with operator_api(tmp_path, mesh.registry_state) as api, ClientSession() as s:
        async with s.get(f"{api.url}/") as r:
            assert r.status == 200 and r.content_type == "text/html"
            page = await r.text()
        assert "/dashboard/app.js" in page and "/dashboard/style.css" in page
        for name, kind in (("app.js", "application/javascript"), ("style.css", "text/css")):
            async with s.get(f"{api.url}/dashboard/{name}") as r:
                assert r.status == 200 and r.content_type == kind
                assert len(await r.read()) > 1000
        async with s.get(f"{api.url}/dashboard/../api.py") as r:
            assert r.status == 404
        async with s.get(f"{api.url}/dashboard/secret.py") as r:
            assert r.status == 404


async def test_figures_need_a_viewer_token(tmp_path, mesh):
    async with operator_api(tmp_path, mesh.registry_state) as api, ClientSession() as s:
        for path in ("/v1/stat", "/v1/edges", "/v1/top", "/v1/overview"):
            async with s.get(f"{api.url}{path}") as r:
                assert r.status == 401, path
        viewer = api.tokens.create("dash", "viewer")
        async with s.get(f"{api.url}/v1/stat?window=30s", headers=bearer(viewer)) as r:
            assert r.status == 200
            body = await r.json()
        assert body["source"] == "live" and body["window_seconds"] == 30
        rows = {row["name"]: row for row in body["services"]}
        assert set(rows) == {"web", "catalog", "inventory"}
        assert rows["catalog"]["meshed"] == 1


async def test_bad_parameters_are_400(tmp_path, mesh):
    async with operator_api(tmp_path, mesh.registry_state) as api, ClientSession() as s:
        for query in ("window=forever", "window=1s", "window=48h"):
            async with s.get(f"{api.url}/v1/stat?{query}", headers=bearer(api.token)) as r:
                assert r.status == 400, query
                assert "window" in (await r.json())["error"]
        async with s.get(f"{api.url}/v1/top?limit=0", headers=bearer(api.token)) as r:
            assert r.status == 400 and "limit" in (await r.json())["error"]


async def test_overview_document(tmp_path, mesh):
    settings = ObservabilitySettings(jaeger_url="http://jaeger:16686", certificate_warning=3600)
    sidecars = [
        {
            "node_id": "catalog~catalog-1",
            "node_cluster": "catalog",
            "identity": "spiffe://gossamer.local/ns/default/sa/catalog",
            "types": {
                "CDS": {"sent_version": "7", "acked_version": "7", "acked_at": 1.0},
                "LDS": {
                    "sent_version": "8",
                    "acked_version": "7",
                    "acked_at": 1.0,
                    "last_nack": {"version": "7", "error": "listener: bad port", "at": 2.0},
                },
            },
        }
    ]
    async with (
        operator_api(tmp_path, mesh.registry_state, settings=settings, sidecars=sidecars) as api,
        ClientSession() as s,
    ):
        traffic = asyncio.create_task(mesh.drive_for(1.5, rate=100))
        async with s.get(f"{api.url}/v1/overview", headers=bearer(api.token)) as r:
            assert r.status == 200
            doc = await r.json()
        await traffic
    nodes = {n["id"]: n for n in doc["graph"]["nodes"]}
    assert set(nodes) == {"web", "catalog", "inventory", "(outside)"}
    assert nodes["catalog"]["traces_url"].startswith("http://jaeger:16686/search?service=catalog")
    assert nodes["catalog"]["stat"]["success_rate"] is not None
    edges = {(e["source"], e["destination"]) for e in doc["graph"]["edges"]}
    assert {("(outside)", "web"), ("web", "catalog"), ("catalog", "inventory")} <= edges
    (row,) = doc["sidecars"]
    assert row["state"] == "NACK" and row["last_nack"]["error"] == "listener: bad port"
    certs = {c["service"]: c for c in doc["certificates"]}
    assert certs["web"]["status"] == "warning" and certs["catalog"]["status"] == "ok"
    assert doc["summary"]["nacks"] == 1 and doc["summary"]["certificates_warning"] == 1
    assert doc["errors"] == []


async def test_overview_reports_an_unreachable_prometheus(tmp_path, mesh):
    dead = ObservabilitySettings(prometheus_url=f"http://127.0.0.1:{free_port()}")
    async with (
        operator_api(tmp_path, mesh.registry_state, settings=dead) as api,
        ClientSession() as s,
    ):
        async with s.get(f"{api.url}/v1/overview", headers=bearer(api.token)) as r:
            assert r.status == 200
            doc = await r.json()
        assert doc["source"] == "prometheus"
        assert doc["errors"] and "cannot reach Prometheus" in doc["errors"][0]
        assert {n["id"] for n in doc["graph"]["nodes"]} == {"web", "catalog", "inventory"}
        async with s.get(f"{api.url}/v1/stat", headers=bearer(api.token)) as r:
            assert r.status == 500 and "cannot reach Prometheus" in (await r.json())["error"]
