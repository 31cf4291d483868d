"""The dashboard's tap panel in a real headless Chromium, on a real control plane and
real sidecars (web -> catalog over mTLS). With an operator token the panel streams live
records, and a record whose trace is sampled links to it in Jaeger
(`observability.jaeger_url`); with a viewer token the panel says that tap needs an
operator token instead of failing silently."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.operator_api import api_call
from tests.helpers.procs import processes, wait_for
from tests.helpers.xds_mesh import XdsMesh, XdsSidecar, http_service, spiffe

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]  # fmt: skip
JAEGER = "http://127.0.0.1:16686"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SERVICES = [http_service("web"), http_service("catalog", authorization={"allow": [spiffe("web")]})]


def send_traffic(web: XdsSidecar, stop: threading.Event) -> None:
    headers = {"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"}  # a sampled trace
    for _ in range(10_000):
        if stop.wait(0.05):
            return
        try:
            web.get("catalog:8080", "/headers?secret=x", headers_extra=headers)
        except OSError:
            pass


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[XdsMesh, dict[str, str]]]:
    tmp = tmp_path_factory.mktemp("dashboard-tap")
    with processes() as procs:
        mesh = XdsMesh(tmp, procs, SERVICES)
        mesh.observability = {"jaeger_url": JAEGER}
        mesh.set_services(SERVICES)
        mesh.start_control()
        admin = (tmp / "data" / "admin-token").read_text().strip()
        tokens = {}
        for role in ("operator", "viewer"):
            status, body = api_call(
                mesh.ports["api"], "/v1/api-tokens", admin, "POST", {"name": role, "role": role}
            )
            assert status == 201, body
            tokens[role] = body["token"]
        mesh.sidecar("catalog", mesh.app("catalog"))
        web = mesh.sidecar("web")
        wait_for(lambda: web.get("catalog:8080", "/")[0] == 200, timeout=30, what="web->catalog")
        stop = threading.Event()
        thread = threading.Thread(target=send_traffic, args=(web, stop), daemon=True)
        thread.start()
        try:
            yield mesh, tokens
        finally:
            stop.set()
            thread.join(10)


async def test_tap_panel_streams_records_and_links_traces(
    mesh: tuple[XdsMesh, dict[str, str]], artifacts_dir: Path
) -> None:
    from playwright.async_api import async_playwright

    xds, tokens = mesh
    url = f"http://127.0.0.1:{xds.ports['api']}"
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 1100})
            problems: list[str] = []
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            await page.goto(f"{url}/#token={tokens['operator']}")
            await page.wait_for_function(
                "() => [...document.querySelectorAll('#tap-service option')]"
                ".some(o => o.value === 'web')",
                timeout=20000,
            )
            # choosing a service in the table makes it the one to tap
            await page.locator('#services tr[data-service="catalog"]').click()
            await page.wait_for_function(
                "() => document.getElementById('tap-service').value === 'catalog'",
                timeout=10000,
            )
            await page.select_option("#tap-service", "web")
            await page.click("#tap-start")
            rows = page.locator("#tap-records tbody tr")
            await page.wait_for_function(
                "() => document.querySelectorAll('#tap-records tbody tr').length >= 3",
                timeout=20000,
            )
            text = await rows.first.inner_text()
            assert "outbound" in text and "catalog:8080" in text and "/headers" in text
            assert "secret" not in text and "200" in text
            link = rows.first.locator("a.trace-link")
            assert await link.get_attribute("href") == f"{JAEGER}/trace/{TRACE_ID}"
            await page.screenshot(path=str(artifacts_dir / "dashboard-tap.png"), full_page=True)
            await page.click("#tap-stop")
            await page.wait_for_function(
                "() => document.getElementById('tap-message').textContent.includes('stopped')",
                timeout=10000,
            )

            # the same page with a viewer token: the panel says tap needs an operator
            await page.evaluate(f"sessionStorage.setItem('gossamer.token', '{tokens['viewer']}')")
            await page.click("#tap-start")
            message = page.locator('#tap-message[data-kind="refused"]')
            await message.wait_for(timeout=10000)
            said = await message.inner_text()
            assert "operator" in said and "needs operator" in said
            assert problems == []
        finally:
            await browser.close()
