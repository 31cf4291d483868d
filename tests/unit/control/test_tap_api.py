"""GET /v1/tap on the real operator API app (in-process, loopback): records stream as
newline-delimited JSON until `max`, the tap is closed at the sidecars and audited; a
full hub is a 429; a viewer is refused before any tap opens."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from aiohttp import ClientSession, web

from gossamer.contract import mesh_pb2
from gossamer.contract.identity import ServiceKey
from gossamer.control.api_tokens import ApiTokenStore
from gossamer.control.audit import AuditLog
from gossamer.control.operator_api import ApiSources, OperatorApi
from gossamer.control.tap_api import add_tap_routes
from gossamer.control.tap_hub import TapHub
from gossamer.discovery.model import RegistryState, Service
from tests.helpers.procs import free_port


async def serve(tmp_path: Path, hub: TapHub) -> tuple[web.AppRunner, str, ApiTokenStore, AuditLog]:
    state = RegistryState(1, services={ServiceKey("default", "web"): Service("web")})

    async def registry_state() -> RegistryState:
        return state

    tokens = ApiTokenStore(tmp_path)
    audit = AuditLog(tmp_path)
    sources = ApiSources(registry_state=registry_state, sidecars=list, config_info=dict)
    api = OperatorApi(sources, tokens, None, audit)
    app = api.app()
    add_tap_routes(app, api, hub, registry_state)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}", tokens, audit


async def test_records_stream_until_max_then_the_tap_closes(tmp_path: Path) -> None:
    hub = TapHub("td")
    link = hub.connect("web", "default", "web-1")
    runner, url, tokens, audit = await serve(tmp_path, hub)
    operator = tokens.create("ops", "operator")
    try:
        params = {"service": "web", "max": "2", "path": "/a"}
        headers = {"Authorization": f"Bearer {operator}"}
        async with (
            ClientSession() as session,
            session.get(f"{url}/v1/tap", params=params, headers=headers) as resp,
        ):
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("application/x-ndjson")
            first = json.loads(await resp.content.readline())
            assert first["type"] == "status" and first["sidecars"] == 1
            opened = link.commands.get_nowait()
            assert opened is not None and opened.open.path_prefix == "/a"
            record = mesh_pb2.TapRecord(ts=1.0, direction="inbound", path="/a/b", status=200)
            report = mesh_pb2.TapReport(tap_id=opened.open.id, records=[record] * 3)
            hub.deliver(link, report)
            lines = [json.loads(line) async for line in resp.content if line.strip()]
        records = [r for r in lines if "ts" in r]
        assert len(records) == 2 and records[0]["path"] == "/a/b"
        closed = link.commands.get_nowait()
        assert closed is not None and closed.close == opened.open.id
        assert hub.taps == {}
        actions = [(e["action"], e["who"]) for e in audit.tail()]
        assert actions == [("tap open", "ops"), ("tap close", "ops")]
        assert audit.tail()[-1]["records"] == 2 and audit.tail()[-1]["reason"] == "max reached"
    finally:
        await runner.cleanup()


async def test_full_hub_is_429_and_viewer_is_403(tmp_path: Path) -> None:
    hub = TapHub("td", max_taps=1)
    link = hub.connect("web", "default", "web-1")
    runner, url, tokens, audit = await serve(tmp_path, hub)
    operator = tokens.create("ops", "operator")
    viewer = tokens.create("look", "viewer")
    try:
        async with ClientSession() as session:
            async with session.get(
                f"{url}/v1/tap", params={"service": "web"},
                headers={"Authorization": f"Bearer {viewer}"},
            ) as resp:  # fmt: skip
                assert resp.status == 403 and "needs operator" in (await resp.json())["error"]
            assert hub.taps == {}
            held = await session.get(
                f"{url}/v1/tap", params={"service": "web"},
                headers={"Authorization": f"Bearer {operator}"},
            )  # fmt: skip
            await held.content.readline()  # the first tap is open
            (open_tap,) = hub.taps.values()
            hub.deliver(link, mesh_pb2.TapReport(tap_id=open_tap.id,
                                                 records=[mesh_pb2.TapRecord(ts=1.0)]))  # fmt: skip
            lines = [json.loads(await held.content.readline()) for _ in range(1)]
            while "ts" not in lines[-1] and len(lines) < 10:  # status lines may come first
                lines.append(json.loads(await held.content.readline()))
            assert "ts" in lines[-1]
            async with session.get(
                f"{url}/v1/tap", params={"service": "web"},
                headers={"Authorization": f"Bearer {operator}"},
            ) as resp:  # fmt: skip
                assert resp.status == 429 and "at most 1" in (await resp.json())["error"]
            async with session.get(
                f"{url}/v1/tap", params={"service": "nosuch"},
                headers={"Authorization": f"Bearer {operator}"},
            ) as resp:  # fmt: skip
                assert resp.status == 404
            held.close()
        # the client is gone: the next heartbeat's write fails and the tap closes
        async with asyncio.timeout(10):
            while hub.taps:
                await asyncio.sleep(0.1)
        assert audit.tail()[-1]["reason"] == "client gone"
        assert audit.tail()[-1]["records"] == 1
    finally:
        await runner.cleanup()
