"""/v1/series and /v1/series/info on the real API app over a real socket, fed by the
history recorder scraping simulated sidecars (the pure parts: test_observe_history.py)."""

from __future__ import annotations

import time

import pytest
from aiohttp import ClientSession

from gossamer.observe.settings import ObservabilitySettings
from tests.helpers.operator_api import operator_api
from tests.helpers.sim_mesh import SimMesh

SETTINGS = ObservabilitySettings(history=300, history_step=10)


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def mesh():
    async with SimMesh(fail_every={"catalog": 2}) as m:
        yield m


async def record_two_rounds(api, mesh):
    """Two recorder rounds 10 s apart on the wall clock, traffic between them."""
    recorder = api.routes.series.recorder
    await recorder.stop()  # the test drives the rounds itself
    now = time.time()
    recorder.clock = lambda: now - 20
    await mesh.drive(10, concurrency=1)
    await recorder.record_once()
    await mesh.drive(20, concurrency=1)
    recorder.clock = lambda: now - 10
    await recorder.record_once()


async def get(s, api, query, token=None):
    async with s.get(f"{api.url}/v1/series?{query}", headers=bearer(token or api.token)) as r:
        return r.status, await r.json()


async def test_series_of_a_service_and_an_edge(tmp_path, mesh):
    async with (
        operator_api(tmp_path, mesh.registry_state, settings=SETTINGS) as api,
        ClientSession() as s,
    ):
        await record_two_rounds(api, mesh)
        viewer = api.tokens.create("dash", "viewer")
        status, body = await get(s, api, "service=catalog&metric=success_rate&range=1m", viewer)
        assert status == 200, body
        assert body["service"] == "catalog" and body["source"] == "live"
        assert body["step_s"] == 10 and body["range_s"] == 60
        values = [v for _, v in body["points"] if v is not None]
        assert values == [pytest.approx(0.5)]  # every second answer of catalog fails
        status, body = await get(s, api, "service=catalog&metric=rps&range=1m&step=10s")
        assert next(v for _, v in body["points"] if v is not None) > 0
        query = "service=catalog&peer=web&direction=inbound&metric=rps&range=1m"
        status, edge = await get(s, api, query)
        assert status == 200 and any(v for _, v in edge["points"])
        query = "service=web&peer=catalog&direction=outbound&metric=success_rate&range=1m"
        status, out = await get(s, api, query)
        assert [v for _, v in out["points"] if v is not None] == [pytest.approx(0.5)]
        status, unknown = await get(s, api, "service=nobody&metric=rps&range=1m")
        assert status == 200 and unknown["points"] == []
        async with s.get(f"{api.url}/v1/series/info", headers=bearer(viewer)) as r:
            info = await r.json()
        assert info["length_s"] == 300 and info["step_s"] == 10 and info["series"] >= 3
        assert info["memory_bytes"] == info["series"] * 30 * 6 * 8


async def test_series_needs_a_token_and_good_parameters(tmp_path, mesh):
    async with (
        operator_api(tmp_path, mesh.registry_state, settings=SETTINGS) as api,
        ClientSession() as s,
    ):
        async with s.get(f"{api.url}/v1/series?service=catalog&metric=rps") as r:
            assert r.status == 401
        cases = {
            "service=catalog&metric=qps": "metric",
            "metric=rps": "service",
            "service=catalog&metric=rps&range=1h": "range",
            "service=catalog&metric=rps&step=1s": "step",
            "service=catalog&metric=rps&range=soon": "range",
            "service=catalog&peer=web&direction=up&metric=rps": "direction",
        }
        for query, field in cases.items():
            status, body = await get(s, api, query)
            assert status == 400, query
            assert body["error"].startswith(f"{field}: "), body


async def test_no_history_is_404(tmp_path, mesh):
    off = ObservabilitySettings(history=0)
    async with (
        operator_api(tmp_path, mesh.registry_state, settings=off) as api,
        ClientSession() as s,
    ):
        status, body = await get(s, api, "service=catalog&metric=rps")
        assert status == 404 and "observability.history is off" in body["error"]
        assert api.routes.series is not None and api.routes.series.recorder is None


async def test_label_values_of_unregistered_services_make_no_series(tmp_path, mesh):
    """A caller's claimed name is a label value on the callee's metrics page: the
    history records only services the registry knows (and `unknown`, callers outside
    the mesh), so forged names cannot allocate series."""
    from tests.helpers.control_metrics import control_metrics_text
    from tests.helpers.sim_mesh import spiffe

    async with (
        operator_api(tmp_path, mesh.registry_state, settings=SETTINGS) as api,
        ClientSession() as s,
    ):
        for i in range(20):
            await mesh.request(headers={"x-sim-peer": spiffe(f"forged-{i}")})
        await record_two_rounds(api, mesh)
        for i in range(20):
            await mesh.request(headers={"x-sim-peer": spiffe(f"forged-{i}")})
        routes = api.routes.series
        assert routes is not None and routes.recorder is not None
        recorder = routes.recorder
        recorder.clock = time.time
        await recorder.record_once()
        store = recorder.store
        kept = store.keys()
        assert not [k for k in kept if any(p.startswith("forged-") for p in k[1:])]
        assert ("edge", "unknown", "web") in store  # mesh.drive's requests carry no identity
        status, body = await get(s, api, "service=web&peer=forged-3&metric=rps&range=1m")
        assert status == 200 and body["points"] == []
        status, body = await get(s, api, "service=web&peer=unknown&metric=rps&range=1m")
        assert any(v for _, v in body["points"])
        series, dropped = routes.counts()
        assert series == len(store) and dropped == 0
        text = control_metrics_text(history=routes.counts)
        assert f"gossamer_control_history_series {float(series)}" in text
        assert "gossamer_control_history_points_dropped_total 0.0" in text
