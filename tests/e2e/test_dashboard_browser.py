"""The dashboard in a real headless Chromium (Debian's, driven by Playwright).

Two set-ups: the operator API app fed by a simulated registry (below), and the real
control plane (in-process `ControlPlane`: registry store, xDS server, API server) with a
real ADS client that NACKs a pushed configuration.

The operator API app serves the page and `/v1/overview` while three services carry real
traffic (telemetry recorded by the library, scraped live from their admin ports). The
page must draw the three services with non-zero rates, warn about a certificate close to
expiry, link to Jaeger, and show a NACK once a sidecar has rejected a configuration:
the sidecar's real ADS state machine (gossamer.proxy.xds.ads_state) refuses a Listener and
the control plane records the NACK's error as its stream registry does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2

from gossamer.contract import xds
from gossamer.observe.settings import ObservabilitySettings
from gossamer.proxy.xds import ads_state as ads
from tests.helpers.ads_client import AdsClient
from tests.helpers.control_plane import mesh, reload_now, running_control_plane
from tests.helpers.operator_api import operator_api
from tests.helpers.sim_mesh import SimMesh, spiffe

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


def stream_entry(service: str, version: str) -> dict[str, Any]:
    now = time.time()
    types = {
        t: {"sent_version": version, "acked_version": version, "acked_at": now, "last_nack": None}
        for t in ("CDS", "EDS", "LDS", "RDS", "SDS")
    }
    return {
        "stream_id": 1,
        "protocol": "sotw",
        "node_id": f"{service}~{service}-1",
        "node_cluster": service,
        "identity": spiffe(service),
        "connected_at": now,
        "types": types,
    }


def decode_listeners(resources):
    for res in resources:
        listener = listener_pb2.Listener()
        res.Unpack(listener)
        port = listener.address.socket_address.port_value
        if not 1 <= port <= 65535:
            raise ValueError(f"listener {listener.name}: port {port} is out of range")
    return ads.Decoded(len(resources))


def nack_from_the_sidecar() -> tuple[str, str]:
    """Send the sidecar's ADS state machine a Listener it rejects; the NACK it answers."""
    decoders = {t: (lambda rs: ads.Decoded(len(rs))) for t in ads.ORDER}
    decoders[xds.LISTENER] = decode_listeners
    state = ads.AdsState(base_pb2.Node(id="catalog~catalog-1"), decoders)
    bad = listener_pb2.Listener(
        name="outbound",
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address="0.0.0.0", port_value=70000)
        ),
    )
    packed = any_pb2.Any()
    packed.Pack(bad)
    response = discovery_pb2.DiscoveryResponse(
        version_info="8", nonce="n8", type_url=xds.LISTENER, resources=[packed]
    )
    (nack,) = state.handle(response)
    assert nack.HasField("error_detail") and nack.response_nonce == "n8"
    return response.version_info, nack.error_detail.message


async def test_dashboard_live(tmp_path, artifacts_dir):
    from playwright.async_api import async_playwright

    settings = ObservabilitySettings(jaeger_url=JAEGER, certificate_warning=3600, window=30)
    sidecars = [stream_entry(s, "7") for s in ("web", "catalog", "inventory")]
    async with (
        SimMesh(fail_every={"inventory": 4}, cert_expires_in={"inventory": 1200}) as mesh,
        operator_api(tmp_path, mesh.registry_state, settings=settings, sidecars=sidecars) as api,
        async_playwright() as pw,
    ):
        traffic = asyncio.create_task(mesh.drive_for(90, rate=30))
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 1100})
            problems: list[str] = []
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            await page.goto(f"{api.url}/#token={api.token}")

            # the three services, each with a non-zero rate
            await page.wait_for_function(
                """() => {
                  const rows = [...document.querySelectorAll('#services tbody tr')];
                  const rps = Object.fromEntries(rows.map(r => [r.dataset.service,
                    parseFloat(r.children[3].textContent)]));
                  return ['web', 'catalog', 'inventory'].every(s => rps[s] > 0);
                }""",
                timeout=20000,
            )
            assert "token=" not in page.url  # taken out of the address bar
            stored = await page.evaluate("sessionStorage.getItem('gossamer.token')")
            assert stored == api.token
            for service in ("web", "catalog", "inventory"):
                node = page.locator(f'#graph g.node[data-service="{service}"]')
                assert await node.count() == 1
                assert "rps" in (await node.text_content() or "")
            edge = page.locator('#graph g.edge[data-source="web"][data-destination="catalog"]')
            assert "/s" in (await edge.text_content() or "")
            inventory = page.locator('#services tr[data-service="inventory"]')
            success = float((await inventory.locator("td").nth(2).inner_text()).rstrip("%"))
            assert 60 < success < 90  # one in four fails
            link = inventory.locator("a")
            assert await link.get_attribute("href") == (
                f"{JAEGER}/search?service=inventory&limit=20&lookback=1h"
            )
            warn = page.locator('#certificates tr[data-status="warning"]')
            assert await warn.count() == 1
            assert "inventory" in await warn.inner_text()
            assert "expires soon" in await warn.inner_text()
            assert await page.locator('#sidecars tr[data-state="ACK"]').count() == 3

            # the catalog sidecar is sent a configuration it rejects
            version, error = nack_from_the_sidecar()
            lds = sidecars[1]["types"]["LDS"]
            lds["sent_version"] = version
            lds["last_nack"] = {"version": "7", "error": error, "at": time.time()}
            row = page.locator('#sidecars tr[data-node="catalog~catalog-1"][data-state="NACK"]')
            await row.wait_for(timeout=10000)
            assert "port 70000 is out of range" in await row.inner_text()
            assert await page.locator('[data-card="NACKs"] .n').text_content() == "1"

            # per-service detail on click
            await page.locator('#graph g.node[data-service="catalog"]').click()
            detail = page.locator("#detail")
            await detail.wait_for(state="visible")
            text = await detail.inner_text()
            assert "web" in text and spiffe("web") in text and "catalog~catalog-1 (NACK)" in text

            await page.screenshot(path=str(artifacts_dir / "dashboard.png"), full_page=True)
            assert problems == []
        finally:
            await browser.close()
            traffic.cancel()
            await asyncio.gather(traffic, return_exceptions=True)


async def test_dashboard_on_the_real_control_plane(tmp_path, artifacts_dir):
    """The control plane serves the page; its registry lists the sidecars' admin ports;
    a sidecar's ADS stream NACKs a push and the page shows the error."""
    from playwright.async_api import async_playwright

    def services(lb: str) -> list[dict[str, Any]]:
        return [
            {"name": name, "ports": [{"port": 8080, "protocol": "http"}], "lb_policy": lb}
            for name in ("web", "catalog", "inventory")
        ]

    config = tmp_path / "mesh.yaml"
    async with (
        SimMesh(fail_every={"inventory": 5}) as sim,
        running_control_plane(tmp_path, mesh(services("round_robin"))) as (plane, target),
        AdsClient(target, "catalog~catalog-1", {"GOSSAMER_SERVICE": "catalog"}) as stream,
        async_playwright() as pw,
    ):
        assert plane.link is not None and plane.api is not None
        store = plane.link.store
        for svc in sim.services:  # what the sidecars' registration would write
            lease = await store.grant_lease(300)
            endpoint = dataclasses.replace(svc.endpoint(), owner=f"lease:{lease}")
            await store.put_endpoint(endpoint, lease=lease)
        await plane.settle()
        await stream.request(xds.CLUSTER)
        first = await stream.recv()
        await stream.ack(first)
        traffic = asyncio.create_task(sim.drive_for(90, rate=30))
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 1000})
            await page.goto(
                f"http://127.0.0.1:{plane.bound_port('api')}/#token={plane.api.admin_token}"
            )
            await page.wait_for_function(
                """() => ['web', 'catalog', 'inventory'].every(s => {
                  const row = document.querySelector(`#services tr[data-service="${s}"]`);
                  return row && parseFloat(row.children[3].textContent) > 0;
                })""",
                timeout=20000,
            )
            ok = page.locator('#sidecars tr[data-node="catalog~catalog-1"][data-state="ACK"]')
            await ok.wait_for(timeout=10000)

            # a configuration change the sidecar cannot apply
            await reload_now(plane, config, mesh(services("least_request")))
            second = await stream.recv()
            error = reject_with_the_sidecar_state_machine(second)
            await stream.nack(second, error, version=first.version_info)
            row = page.locator('#sidecars tr[data-node="catalog~catalog-1"][data-state="NACK"]')
            await row.wait_for(timeout=10000)
            shown = await row.inner_text()
            assert "least_request is not supported" in shown
            assert f"version {second.version_info} rejected" in shown
            await page.screenshot(
                path=str(artifacts_dir / "dashboard-control-plane.png"), full_page=True
            )
        finally:
            await browser.close()
            traffic.cancel()
            await asyncio.gather(traffic, return_exceptions=True)


def reject_with_the_sidecar_state_machine(response: Any) -> str:
    """Feed a CDS push to the sidecar's ADS state machine with a decoder that refuses
    least_request; the error of the NACK it answers."""

    def decode(resources: Any) -> ads.Decoded:
        for res in resources:
            cluster = cluster_pb2.Cluster()
            res.Unpack(cluster)
            for policy in cluster.load_balancing_policy.policies:
                if policy.typed_extension_config.name.endswith("least_request"):
                    raise ValueError(f"cluster {cluster.name}: least_request is not supported")
        return ads.Decoded(len(resources))

    decoders = {t: (lambda rs: ads.Decoded(len(rs))) for t in ads.ORDER}
    decoders[xds.CLUSTER] = decode
    state = ads.AdsState(base_pb2.Node(id="catalog~catalog-1"), decoders)
    (nack,) = state.handle(response)
    assert nack.HasField("error_detail")
    return str(nack.error_detail.message)
