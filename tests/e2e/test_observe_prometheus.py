"""Golden metrics end to end: sidecar metrics -> http_sd -> a real Prometheus -> CLI.

Three services (web -> catalog -> inventory) record real HTTP requests with the
telemetry library and export them on their metrics ports; inventory fails every 4th
request, so every service's success rate is 75%. A real Prometheus (Debian's package)
finds the metrics ports only through the operator API's `/v1/http_sd`, with a viewer
token from a file (`credentials_file`, as `gossamer inject` sets it up), scrapes them, and
`gossamer stat --prometheus URL -o json` (a subprocess) must show non-zero rates and
that success rate. The same figures must come out of the control plane's live path
(no Prometheus) through `gossamer stat --api`.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
import tempfile
from typing import Any

import pytest

from tests.helpers.operator_api import operator_api
from tests.helpers.prometheus import running_prometheus, values
from tests.helpers.sim_mesh import SimMesh, spiffe

pytestmark = pytest.mark.e2e

RATE = 40.0  # requests per second into web
EMPTY_DIR = tempfile.mkdtemp(prefix="gossamer-cli-")


async def gossamer(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run the CLI in a folder without a mesh.yaml (so none is read by accident)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gossamer.cli.main",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
        cwd=EMPTY_DIR,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


def by_name(rows: list[dict[str, Any]], key: str = "name") -> dict[str, dict[str, Any]]:
    return {r[key]: r for r in rows}


async def test_stat_through_real_prometheus(tmp_path):
    async with (
        SimMesh(fail_every={"inventory": 4}) as mesh,
        operator_api(tmp_path, mesh.registry_state) as api,
    ):
        traffic = asyncio.create_task(mesh.drive_for(120, rate=RATE))
        try:
            # the token file the control plane accepts (observability.prometheus_token_file)
            token_file = tmp_path / "prometheus.token"
            token_file.write_text("gsa1_" + secrets.token_urlsafe(32) + "\n")
            token_file.chmod(0o600)
            api.tokens.add_file_token("prometheus", "viewer", token_file)
            with running_prometheus(
                tmp_path / "prom", f"{api.url}/v1/http_sd", credentials_file=token_file
            ) as prom:
                # discovered through http_sd only, with the registry's labels
                up = await asyncio.to_thread(
                    prom.wait_for_query,
                    'up{job="gossamer-sidecars"} == 1',
                    lambda r: len(r) == 3,
                )
                assert {s["metric"]["gossamer_service"] for s in up} == {
                    "web",
                    "catalog",
                    "inventory",
                }
                assert {s["metric"]["instance"] for s in up} == {
                    f"127.0.0.1:{svc.metrics_port}" for svc in mesh.services
                }
                # PromQL: the request rate of a demo service
                expr = (
                    'sum(rate(gossamer_requests_total{reporter="destination",'
                    'destination_service="inventory"}[20s]))'
                )
                rate = await asyncio.to_thread(
                    prom.wait_for_query, expr, lambda r: bool(r) and values(r)[0] > 0
                )
                assert values(rate)[0] < 2 * RATE
                # let the window fill with scrapes of steady traffic before judging rates
                await asyncio.to_thread(
                    prom.wait_for_query,
                    'count_over_time(up{job="gossamer-sidecars",gossamer_service="web"}[1m])',
                    lambda r: bool(r) and values(r)[0] >= 12,
                )
                code, out, err = await gossamer(
                    "stat", "--prometheus", prom.url, "--window", "10s", "-o", "json"
                )
                assert code == 0, err
                data = json.loads(out)
                assert data["source"] == "prometheus"
                rows = by_name(data["services"])
                assert set(rows) == {"web", "catalog", "inventory"}
                for name, row in rows.items():
                    assert row["meshed"] == 1 and row["instances"] == 1, row
                    assert 0.2 * RATE < row["rps"] < 2 * RATE, row
                    # inventory fails 1 in 4; catalog and web pass the failure on
                    assert row["success_rate"] == pytest.approx(0.75, abs=0.05), (name, row)
                    assert row["latency_p50_ms"] is not None and row["latency_p50_ms"] > 0
                    assert row["latency_p99_ms"] >= row["latency_p50_ms"]
                    assert row["tcp_connections"] is not None and row["tcp_connections"] >= 1

                code, out, err = await gossamer(
                    "stat", "inventory", "--prometheus", prom.url, "-w", "10s", "-o", "json"
                )
                assert code == 0, err
                assert [r["name"] for r in json.loads(out)["services"]] == ["inventory"]

                code, out, err = await gossamer(
                    "edges", "--prometheus", prom.url, "-w", "10s", "-o", "json"
                )
                assert code == 0, err
                edges = {(e["source"], e["destination"]): e for e in json.loads(out)["edges"]}
                assert ("web", "catalog") in edges and ("catalog", "inventory") in edges
                web_catalog = edges[("web", "catalog")]
                assert web_catalog["client_identities"] == [spiffe("web")]
                assert web_catalog["server_identities"] == [spiffe("catalog")]
                assert web_catalog["secured"] is True and web_catalog["rps"] > 0
                assert edges[("unknown", "web")]["secured"] is False

                code, out, err = await gossamer(
                    "top", "--prometheus", prom.url, "-w", "10s", "-o", "json"
                )
                assert code == 0, err
                routes = json.loads(out)["routes"]
                pairs = [(r["source"], r["destination"], r["route"]) for r in routes]
                assert ("web", "catalog", "catalog-default") in pairs
                assert ("unknown", "web", "inbound") in pairs  # the caller outside the mesh

                # the table for people, too
                code, out, err = await gossamer("stat", "--prometheus", prom.url, "-w", "10s")
                assert code == 0, err
                header, *lines = [line for line in out.splitlines() if line.strip()]
                assert header.split() == [
                    "NAME", "MESHED", "SUCCESS", "RPS", "LATENCY_P50", "LATENCY_P95",
                    "LATENCY_P99", "TCP_CONN",
                ]  # fmt: skip
                inventory = next(line.split() for line in lines if line.startswith("inventory"))
                assert inventory[1] == "1/1" and inventory[2].endswith("%")
        finally:
            traffic.cancel()
            await asyncio.gather(traffic, return_exceptions=True)


async def test_stat_live_through_the_control_plane(tmp_path):
    async with (
        SimMesh(fail_every={"inventory": 4}) as mesh,
        operator_api(tmp_path, mesh.registry_state) as api,
    ):
        await mesh.drive(40, concurrency=1)  # before the first scrape: the baseline
        traffic = asyncio.create_task(mesh.drive_for(60, rate=RATE))
        try:
            await asyncio.sleep(0)  # traffic flowing while the control plane scrapes twice
            env = {"GOSSAMER_API_TOKEN": api.token}
            code, out, err = await gossamer(
                "stat", "--api", api.url, "-w", "30s", "-o", "json", env=env
            )
            assert code == 0, err
            data = json.loads(out)
            assert data["source"] == "live"
            rows = by_name(data["services"])
            assert set(rows) == {"web", "catalog", "inventory"}
            for row in rows.values():
                assert row["meshed"] == 1 and row["rps"] > 0, row
                assert row["success_rate"] == pytest.approx(0.75, abs=0.1), row

            code, out, err = await gossamer("edges", "--api", api.url, "-o", "json", env=env)
            assert code == 0, err
            edges = {(e["source"], e["destination"]): e for e in json.loads(out)["edges"]}
            assert edges[("catalog", "inventory")]["client_identities"] == [spiffe("catalog")]

            code, out, err = await gossamer("top", "--api", api.url, "-o", "json", env=env)
            assert code == 0, err
            assert json.loads(out)["routes"][0]["rps"] > 0

            # a wrong token is one clear line, not a traceback
            code, out, err = await gossamer(
                "stat", "--api", api.url, env={"GOSSAMER_API_TOKEN": "gsa1_nope"}
            )
            assert code != 0 and "refused the token" in err and "Traceback" not in err
        finally:
            traffic.cancel()
            await asyncio.gather(traffic, return_exceptions=True)
