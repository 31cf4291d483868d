"""The demo services as real processes: the chain answers and trace headers are forwarded."""

from __future__ import annotations

import functools
import json

import pytest
from aiohttp import web

from tests.helpers.procs import (
    Process,
    free_port,
    gossamer_cmd,
    http_get,
    port_open,
    processes,
    wait_for,
)

pytestmark = pytest.mark.e2e


def test_web_catalog_inventory_chain(tmp_path):
    inv, cat, webp = free_port(), free_port(), free_port()
    with processes() as procs:
        procs.append(
            Process(
                gossamer_cmd("demo", "app", "--role", "inventory", "--port", str(inv)),
                tmp_path / "inv.log",
            )
        )
        procs.append(
            Process(
                gossamer_cmd(
                    "demo",
                    "app",
                    "--role",
                    "catalog",
                    "--port",
                    str(cat),
                    "--upstream",
                    f"http://127.0.0.1:{inv}",
                ),
                tmp_path / "cat.log",
            )
        )
        procs.append(
            Process(
                gossamer_cmd(
                    "demo",
                    "app",
                    "--role",
                    "web",
                    "--port",
                    str(webp),
                    "--upstream",
                    f"http://127.0.0.1:{cat}",
                ),
                tmp_path / "web.log",
            )
        )
        for port in (inv, cat, webp):
            wait_for(functools.partial(port_open, port), what=f"port {port}")
        status, body = http_get(f"http://127.0.0.1:{webp}/")
        assert status == 200, body
        page = json.loads(body)
        assert len(page["items"]) == 3 and all("in_stock" in i for i in page["items"])
        assert [p.split("-")[0] for p in page["path"]] == ["web", "catalog", "inventory"]


def test_missing_upstream_is_a_clear_error():
    import subprocess

    result = subprocess.run(
        gossamer_cmd("demo", "app", "--role", "web"), capture_output=True, text=True, timeout=30
    )
    assert (
        result.returncode == 2
        and "--upstream is required" in result.stderr
        and "Traceback" not in result.stderr
    )


async def test_trace_headers_are_forwarded(tmp_path):
    seen: list[dict[str, str]] = []

    async def stock(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.json_response({"stock": {}, "served_by": "fake"})

    fake = web.Application()
    fake.router.add_get("/stock", stock)
    runner = web.AppRunner(fake)
    await runner.setup()
    fake_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", fake_port).start()
    from gossamer.demo.services import DemoConfig, DemoService

    service = DemoService(
        DemoConfig("catalog", 0, upstream=f"http://127.0.0.1:{fake_port}", latency_ms=0)
    )
    app_runner = web.AppRunner(service.app())
    await app_runner.setup()
    cat_port = free_port()
    await web.TCPSite(app_runner, "127.0.0.1", cat_port).start()
    try:
        from aiohttp import ClientSession

        headers = {
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "tracestate": "vendor=1",
            "x-b3-traceid": "0af7651916cd43dd8448eb211c80319c",
            "x-request-id": "abc",
            "x-not-forwarded": "1",
        }
        async with (
            ClientSession() as session,
            session.get(f"http://127.0.0.1:{cat_port}/items", headers=headers) as r,
        ):
            assert r.status == 200
    finally:
        await app_runner.cleanup()
        await runner.cleanup()
    assert len(seen) == 1
    got = {k.lower(): v for k, v in seen[0].items()}
    for name in ("traceparent", "tracestate", "x-b3-traceid", "x-request-id"):
        assert got[name] == headers[name]
    assert "x-not-forwarded" not in got
