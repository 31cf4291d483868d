"""GET /v1/tap on the real operator API app (in-process, loopback): records stream as
newline-delimited JSON until `max`, the tap is closed at the sidecars and audited; a
full hub is a 429; a viewer is refused before any tap opens."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, web

from gossamer.contract import mesh_pb2
from gossamer.contract.identity import ServiceKey
from gossamer.control import tap_api
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
                                                 records=[mesh_pb2.TapRecord(ts=1.0, direction="inbound")]))  # fmt: skip
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


async def open_tap(url: str, token: str, params: dict[str, str]) -> tuple[ClientSession, Any]:
    session = ClientSession()
    resp = await session.get(
        f"{url}/v1/tap", params=params, headers={"Authorization": f"Bearer {token}"}
    )
    assert resp.status == 200
    await resp.content.readline()  # the first status line: the tap is open
    return session, resp


async def test_stopping_the_server_ends_open_taps_at_once(tmp_path: Path) -> None:
    hub = TapHub("td")
    runner, url, tokens, audit = await serve(tmp_path, hub)
    session, resp = await open_tap(url, tokens.create("ops", "operator"), {"service": "web"})
    cleaned = False
    try:
        started = time.monotonic()
        async with asyncio.timeout(20):  # was aiohttp's 60 s graceful wait plus 60 s
            await runner.cleanup()
        cleaned = True
        assert time.monotonic() - started < 10
        assert hub.taps == {}
        last = audit.tail()[-1]
        assert last["action"] == "tap close" and last["reason"] == "control plane stopping"
        lines = [json.loads(x) for x in (await resp.content.read()).splitlines() if x.strip()]
        assert lines[-1] == {"type": "end", "reason": "control plane stopping"}, lines
    finally:
        resp.close()
        await session.close()
        if not cleaned:
            await runner.cleanup()


async def test_a_failed_audit_write_does_not_leak_the_tap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = TapHub("td")
    runner, url, tokens, audit = await serve(tmp_path, hub)
    operator = tokens.create("ops", "operator")

    def broken(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(audit, "record", broken)
    try:
        async with (
            ClientSession() as session,
            session.get(f"{url}/v1/tap", params={"service": "web"},
                        headers={"Authorization": f"Bearer {operator}"}) as resp,
        ):  # fmt: skip
            assert resp.status == 500
        assert hub.taps == {}
    finally:
        await runner.cleanup()


async def test_a_client_that_stops_reading_loses_its_tap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tap_api, "WRITE_SECONDS", 0.5)
    hub = TapHub("td")
    link = hub.connect("web", "default", "web-1")
    runner, url, tokens, audit = await serve(tmp_path, hub)
    operator = tokens.create("ops", "operator")
    port = int(url.rsplit(":", 1)[1])
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        head = (f"GET /v1/tap?service=web HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Bearer {operator}\r\n\r\n")  # fmt: skip
        await asyncio.get_running_loop().sock_sendall(sock, head.encode())
        async with asyncio.timeout(30):
            while not hub.taps:
                await asyncio.sleep(0.05)
            (tap,) = hub.taps.values()
            record = mesh_pb2.TapRecord(ts=1.0, direction="inbound", path="/" + "a" * 4000)
            while hub.taps:  # never read: the server's buffers fill, then a write waits
                hub.deliver(link, mesh_pb2.TapReport(tap_id=tap.id, records=[record] * 200))
                await asyncio.sleep(0.05)
        last = audit.tail()[-1]
        assert last["action"] == "tap close" and last["reason"] == "client too slow"
    finally:
        sock.close()
        await runner.cleanup()


async def test_refused_taps_are_audited_with_what_was_asked(tmp_path: Path) -> None:
    hub = TapHub("td", max_taps=1)
    runner, url, tokens, audit = await serve(tmp_path, hub)
    operator = tokens.create("ops", "operator")
    viewer = tokens.create("look", "viewer")
    try:
        async with ClientSession() as session:
            for token, params, status in [
                (viewer, {"service": "web"}, 403),
                (operator, {"service": "web", "max": "x"}, 400),
                (operator, {"service": "nosuch"}, 404),
            ]:
                async with session.get(f"{url}/v1/tap", params=params,
                                       headers={"Authorization": f"Bearer {token}"}) as resp:  # fmt: skip
                    assert resp.status == status
        held_session, held = await open_tap(url, operator, {"service": "web.default"})
        async with (
            ClientSession() as session,
            session.get(f"{url}/v1/tap", params={"service": "web"},
                        headers={"Authorization": f"Bearer {operator}"}) as resp,
        ):  # fmt: skip
            assert resp.status == 429
        held.close()
        await held_session.close()
        entries = audit.tail()
        refused = [(e["who"], e["status"], e["outcome"]) for e in entries if "status" in e]
        assert refused == [("look", 403, "denied"), ("ops", 400, "failed"),
                           ("ops", 404, "failed"), ("ops", 429, "failed")]  # fmt: skip
        assert "service=web" in entries[0]["query"] and "max=x" in entries[1]["query"]
        opened = next(e for e in entries if e["action"] == "tap open")
        assert opened["namespace"] == "default"
    finally:
        await runner.cleanup()
