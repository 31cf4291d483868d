"""The dashboard's charts over time in a real headless Chromium, on real processes: a
real `gossamer control` (history every 2 s) and real sidecars carrying traffic from
web to catalog. Clicking a service draws its requests/s, success rate and p99 as
non-empty SVG lines; the range picker offers what the history holds and changes the
range the page asks for; clicking the edge in the graph charts that edge, a late
reply for the service selected before is not drawn over the edge's charts, and replies
slower than the page's refresh are still drawn."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.e2e.test_dashboard_browser import ARGS, CHROMIUM
from tests.helpers.procs import processes, wait_for
from tests.helpers.xds_mesh import XdsMesh, XdsSidecar, http_service

pytestmark = pytest.mark.e2e

LINE_HAS_POINTS = """(metric) => {
  const path = document.querySelector(`#charts svg[data-metric="${metric}"] path.series-line`);
  return !!path && (path.getAttribute('d') || '').includes('L');
}"""


RECORD_DRAWS = """() => {
  window.drawn = [];
  new MutationObserver((changes) => {
    for (const change of changes) for (const added of change.addedNodes) {
      const svg = added.querySelector && added.querySelector('svg.series-chart');
      if (svg) window.drawn.push(svg.dataset.series);
    }
  }).observe(document.getElementById('charts'), { childList: true });
}"""


async def slow_replies_are_still_drawn(page: Any) -> None:
    """Every /v1/series reply held back 6.5 s, longer than the page's 5 s refresh: the
    refresh timer must not supersede the requests still out, so the charts of the same
    selection are drawn (late), not dropped as stale forever."""
    queries = re.compile(r"/v1/series\?")
    released: list[str] = []

    async def slower_than_the_refresh(route: Any) -> None:
        await asyncio.sleep(6.5)
        if not released:  # forget draws of replies sent before the route held them
            await page.evaluate("() => { window.drawn = []; }")
        released.append(route.request.url)
        await route.continue_()

    await page.evaluate(RECORD_DRAWS)
    await page.route(queries, slower_than_the_refresh)
    await page.wait_for_function(
        "() => window.drawn.includes('catalog inbound web')", timeout=20000
    )
    await page.unroute(queries)


async def late_replies_are_dropped(page: Any, edge: Any) -> None:
    """Click catalog (its /v1/series replies held back 3 s), then at once the edge web ->
    catalog: the charts draw the edge, and never catalog's late replies after it."""
    held: list[str] = []
    queries = re.compile(r"/v1/series\?")

    async def slow_service_queries(route: Any) -> None:
        if "peer=" in route.request.url:
            await route.continue_()
            return
        held.append(route.request.url)
        await asyncio.sleep(3)
        await route.continue_()

    def on_finished(request: Any) -> None:
        if "/v1/series?" in request.url and "peer=" not in request.url:
            finished.append(request.url)

    await page.route(queries, slow_service_queries)
    finished: list[str] = []
    page.on("requestfinished", on_finished)
    await page.evaluate(RECORD_DRAWS)
    await page.locator('#graph g.node[data-service="catalog"]').click()
    await edge.locator("text").first.click()
    wait_until = time.monotonic() + 20
    while time.monotonic() < wait_until and (len(held) < 3 or len(finished) < len(held)):
        await page.wait_for_timeout(100)
    assert len(held) >= 3 and len(finished) >= len(held), (held, finished)
    await page.wait_for_timeout(1000)  # the page handles the late replies
    drawn = await page.evaluate("() => window.drawn")
    assert "catalog inbound web" in drawn, drawn
    assert "catalog" not in drawn, drawn  # a late reply drawn under the edge's label
    assert await page.locator("#charts").get_attribute("data-target") == "web → catalog"
    await page.unroute(queries)


def traffic(web: XdsSidecar, stop: threading.Event) -> None:
    """About 10 requests a second from web to catalog, one in five failing, until `stop`."""
    sent = 0
    while not stop.is_set():
        web.get("catalog", "/status/500" if sent % 5 == 4 else "/")
        sent += 1
        stop.wait(0.1)


async def test_charts_of_a_service_and_an_edge(tmp_path, artifacts_dir):
    from playwright.async_api import async_playwright

    stop = threading.Event()
    with processes() as procs:
        mesh = XdsMesh(tmp_path, procs, [http_service("web"), http_service("catalog")])
        mesh.observability = {"history": "2h", "history_step": "2s"}
        mesh.set_services(mesh.services)
        mesh.start_control()
        mesh.sidecar("catalog", mesh.app("catalog-0"))
        web = mesh.sidecar("web")
        wait_for(lambda: web.get("catalog", "/")[0] == 200, timeout=30, what="web -> catalog")
        driver = threading.Thread(target=traffic, args=(web, stop), daemon=True)
        driver.start()
        token = (tmp_path / "data" / "admin-token").read_text().strip()
        url = f"http://127.0.0.1:{mesh.ports['api']}"
        asked: list[dict[str, list[str]]] = []
        try:
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                try:
                    page = await browser.new_page(viewport={"width": 1400, "height": 1200})
                    problems: list[str] = []
                    page.on("pageerror", lambda exc: problems.append(str(exc)))
                    page.on(
                        "request",
                        lambda r: (
                            asked.append(parse_qs(urlsplit(r.url).query))
                            if "/v1/series?" in r.url
                            else None
                        ),
                    )
                    await page.goto(f"{url}/#token={token}")

                    # a service: three charts, each line with at least two points
                    node = page.locator('#graph g.node[data-service="catalog"]')
                    await node.wait_for(timeout=20000)
                    await node.click()
                    await page.wait_for_function(
                        "() => document.getElementById('charts').dataset.target === 'catalog'",
                        timeout=20000,
                    )
                    for metric in ("rps", "success_rate", "latency_p99_ms"):
                        await page.wait_for_function(LINE_HAS_POINTS, arg=metric, timeout=30000)
                    assert await page.locator("#charts svg.series-chart").count() == 3

                    # the range picker: what a 2 h history holds; a change changes the query
                    options = await page.locator("#chart-range option").all_inner_texts()
                    assert options == ["5m", "1h"]
                    assert await page.locator("#chart-range").input_value() == "1h"
                    assert any(q.get("range") == ["1h"] for q in asked)
                    await page.locator("#chart-range").select_option("5m")
                    await page.wait_for_function(LINE_HAS_POINTS, arg="rps", timeout=10000)
                    wait_until = time.monotonic() + 10
                    while time.monotonic() < wait_until and not any(
                        q.get("range") == ["5m"] for q in asked
                    ):
                        await page.wait_for_timeout(100)
                    five = [q for q in asked if q.get("range") == ["5m"]]
                    assert {q["metric"][0] for q in five} >= {"rps", "success_rate"}

                    # an edge: click it in the graph, its own charts
                    asked.clear()
                    edge = page.locator(
                        '#graph g.edge[data-source="web"][data-destination="catalog"]'
                    )
                    await edge.locator("text").first.click()
                    await page.wait_for_function(
                        "() => document.getElementById('charts').dataset.target === 'web → catalog'",
                        timeout=10000,
                    )
                    await page.wait_for_function(LINE_HAS_POINTS, arg="rps", timeout=20000)
                    edge_queries = [q for q in asked if q.get("peer") == ["web"]]
                    assert edge_queries, asked
                    assert all(
                        q["service"] == ["catalog"] and q["direction"] == ["inbound"]
                        for q in edge_queries
                    )
                    assert "web → catalog" in await page.locator("#charts-title").inner_text()

                    # a slow reply of an older selection is not drawn over the newer one:
                    # the service's requests answer 3 s late, the edge is clicked meanwhile
                    await late_replies_are_dropped(page, edge)
                    await slow_replies_are_still_drawn(page)

                    await page.screenshot(
                        path=str(artifacts_dir / "dashboard-charts.png"), full_page=True
                    )
                    assert problems == []
                finally:
                    await browser.close()
        finally:
            stop.set()
            driver.join(timeout=10)
