"""The dashboard in a real headless Chromium (Debian's, driven by Playwright), served by
a real `gossamer control` for the real mesh of tests/helpers/observed_mesh.py.

Real sidecars (mutual TLS, certificates from the control plane's CA) carry `RATE`
requests per second loadgen -> web -> catalog -> inventory, inventory failing one in
five. The page must draw the services with their rates, inventory's success rate (80%),
the edges with the SPIFFE IDs of the handshakes, link to Jaeger, and warn about the
inventory sidecar's certificate: that sidecar asked for a 20-minute certificate
(`--cert-ttl`), closer to expiry than `observability.certificate_warning` (1 h).

Then mesh.yaml gives catalog an HTTP health check whose path has a space: the control
plane accepts it (its check is only "starts with /"), the sidecars that call catalog
refuse the cluster ("is not a path") and NACK the push, and the page must show each
NACK with the sidecar's own error. (The day the control plane refuses such a path
itself, this test needs another configuration the sidecars reject.)
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.helpers.observed_mesh import FAIL_EVERY, ObservedMesh, observed_mesh, spiffe
from tests.helpers.procs import wait_for
from tests.helpers.xds_mesh import http_service

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
JAEGER = "http://127.0.0.1:16686"
BAD_PATH = "/health z"


def nacking(om: ObservedMesh) -> dict[str, dict[str, Any]]:
    """The sidecars the control plane lists with a NACK, by node."""
    status, overview = om.api("/v1/overview")
    assert status == 200, overview
    return {s["node"]: s for s in overview["sidecars"] if s["state"] == "NACK"}


async def test_dashboard_on_the_real_mesh(tmp_path, artifacts_dir):
    from playwright.async_api import async_playwright

    observability = {"jaeger_url": JAEGER, "certificate_warning": "1h", "window": "10s"}
    with observed_mesh(
        tmp_path, observability=observability, sidecar_args={"inventory": ["--cert-ttl", "1200"]}
    ) as om:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                await check_page(om, browser, artifacts_dir)
            finally:
                await browser.close()


async def check_page(om: ObservedMesh, browser: Any, artifacts_dir: Any) -> None:
    page = await browser.new_page(viewport={"width": 1400, "height": 1100})
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    await page.goto(f"{om.api_url}/#token={om.admin_token}")

    # the three services, each with a non-zero rate, inventory's success rate settled
    await page.wait_for_function(
        """() => {
          const rows = [...document.querySelectorAll('#services tbody tr')];
          const cell = (s, i) => {
            const row = rows.find(r => r.dataset.service === s);
            return row ? parseFloat(row.children[i].textContent) : NaN;
          };
          return ['web', 'catalog', 'inventory'].every(s => cell(s, 3) > 0)
            && Math.abs(cell('inventory', 2) - 80) <= 5;
        }""",
        timeout=45000,
    )
    assert "token=" not in page.url  # taken out of the address bar
    assert await page.evaluate("sessionStorage.getItem('gossamer.token')") == om.admin_token
    for service in ("web", "catalog", "inventory", "loadgen"):
        node = page.locator(f'#graph g.node[data-service="{service}"]')
        assert await node.count() == 1, service
    for service in ("web", "catalog", "inventory"):
        node = page.locator(f'#graph g.node[data-service="{service}"]')
        assert "rps" in (await node.text_content() or "")
    edge = page.locator('#graph g.edge[data-source="web"][data-destination="catalog"]')
    assert "/s" in (await edge.text_content() or "")
    web = page.locator('#services tr[data-service="web"]')
    assert float((await web.locator("td").nth(2).inner_text()).rstrip("%")) == 100.0
    inventory = page.locator('#services tr[data-service="inventory"]')
    success = float((await inventory.locator("td").nth(2).inner_text()).rstrip("%"))
    assert success == pytest.approx(100 * (1 - 1 / FAIL_EVERY), abs=5)
    assert await inventory.locator("a").get_attribute("href") == (
        f"{JAEGER}/search?service=inventory&limit=20&lookback=1h"
    )
    # the certificates the sidecars really hold: only inventory's is close to expiry
    warn = page.locator('#certificates tr[data-status="warning"]')
    await warn.first.wait_for(timeout=20000)
    assert await warn.count() == 1
    text = await warn.inner_text()
    assert "inventory" in text and spiffe("inventory") in text and "expires soon" in text
    assert await page.locator('#certificates tr[data-status="ok"]').count() == 3
    assert await page.locator('#sidecars tr[data-state="ACK"]').count() == 4

    # per-service detail on click: callers with the handshake's identities
    await page.locator('#graph g.node[data-service="catalog"]').click()
    detail = page.locator("#detail")
    await detail.wait_for(state="visible")
    text = await detail.inner_text()
    assert f"[client {spiffe('web')}]" in text and f"[server {spiffe('catalog')}]" in text
    assert f"[client {spiffe('catalog')}]" in text  # catalog -> inventory, among its calls

    # a configuration the sidecars calling catalog cannot apply
    services = [http_service(n) for n in ("web", "catalog", "inventory", "loadgen")]
    services[1]["health_check"] = {"http_path": BAD_PATH, "interval": "5s", "timeout": "1s"}
    om.mesh.set_services(services)
    await asyncio.to_thread(
        wait_for, lambda: len(nacking(om)) >= 1, 30, 0.3, "a sidecar to NACK the push"
    )
    nacks = nacking(om)
    for node, sidecar in nacks.items():
        assert "is not a path" in json.dumps(sidecar["last_nack"]), (node, sidecar)
        row = page.locator(f'#sidecars tr[data-node="{node}"][data-state="NACK"]')
        await row.wait_for(timeout=15000)
        shown = await row.inner_text()
        assert f"health check path {BAD_PATH!r} is not a path" in shown, shown
        assert "rejected" in shown
    await page.wait_for_function(
        "n => document.querySelector('[data-card=\"NACKs\"] .n').textContent === String(n)",
        arg=len(nacking(om)),
        timeout=15000,
    )
    # web's sidecar calls catalog: it is among those refusing
    assert any(sidecar["service"] == "web" for sidecar in nacks.values()), nacks
    # catalog's detail (still selected) lists its sidecar with the NACK
    (catalog_node,) = [node for node, sc in nacks.items() if sc["service"] == "catalog"]
    await page.wait_for_function(
        "t => document.querySelector('#detail').innerText.includes(t)",
        arg=f"{catalog_node} (NACK)",
        timeout=15000,
    )
    # the sidecars keep serving with their last good configuration
    assert om.sidecars["loadgen"].get("web", "/")[0] == 200

    await page.screenshot(path=str(artifacts_dir / "dashboard.png"), full_page=True)
    assert problems == []
