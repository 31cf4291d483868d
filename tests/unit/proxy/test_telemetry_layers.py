"""The telemetry layers' series caches: every request lands in the series of its own
labels, whichever cached entry the layer looked it up by (e2e: test_xds_metrics.py)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from gossamer.proxy.config import AppPort
from gossamer.proxy.service import Request, Response
from gossamer.proxy.telemetry.layers import inbound_telemetry, outbound_telemetry
from gossamer.proxy.telemetry.wiring import Telemetry
from gossamer.proxy.transport.http1.conns import ConnectionInfo


async def _ok(req: Request) -> Response:
    return Response(200 if req.method != "DELETE" else 503, [], b"")


def _counts(telemetry: Telemetry) -> dict[tuple[str, ...], tuple[int, int]]:
    """labels -> (successes, failures)"""
    series = telemetry.metrics.request_series()
    counts: dict[tuple[str, ...], tuple[int, int]] = {
        s.labels: (sum(s.ok.values()), sum(s.failed.values())) for s in series
    }
    assert len(counts) == len(series), "two series with the same labels"
    return counts


def _inbound_conn(peer: str | None, port: int = 8080) -> ConnectionInfo:
    security = "mutual_tls" if peer else "none"
    return ConnectionInfo(
        "inbound", "10.0.0.2", peer_identity=peer, security=security, app_port=AppPort(port)
    )


def test_inbound_series_follow_each_connections_peer_port_and_method():
    telemetry = Telemetry()
    call = inbound_telemetry(telemetry, "catalog", lambda: None)(_ok)
    web = _inbound_conn("spiffe://gossamer.local/ns/default/sa/web")
    admin = _inbound_conn("spiffe://gossamer.local/ns/default/sa/admin", port=9090)
    plain = _inbound_conn(None)

    async def run() -> None:
        for conn, method in [
            (web, "GET"), (web, "GET"), (web, "POST"), (web, "DELETE"),
            (admin, "GET"), (plain, "GET"), (None, "GET"),
        ]:  # fmt: skip
            await call(Request(method, b"/", "catalog:8080", [], conn=conn))

    asyncio.run(run())
    assert _counts(telemetry) == {
        ("destination", "web", "catalog", "mutual_tls", "inbound|8080", "GET"): (2, 0),
        ("destination", "web", "catalog", "mutual_tls", "inbound|8080", "POST"): (1, 0),
        ("destination", "web", "catalog", "mutual_tls", "inbound|8080", "DELETE"): (0, 1),
        ("destination", "admin", "catalog", "mutual_tls", "inbound|9090", "GET"): (1, 0),
        ("destination", "unknown", "catalog", "none", "inbound|8080", "GET"): (1, 0),
        ("destination", "unknown", "catalog", "none", "default", "GET"): (1, 0),
    }
    assert set(web.request_series) == {"GET", "POST", "DELETE"}


def test_a_connection_keeps_a_bounded_number_of_series_and_still_counts_all():
    telemetry = Telemetry()
    call = inbound_telemetry(telemetry, "catalog", lambda: None)(_ok)
    conn = _inbound_conn("spiffe://gossamer.local/ns/default/sa/web")
    methods = [f"M{i}" for i in range(20)]

    async def run() -> None:
        for method in methods * 2:
            await call(Request(method, b"/", "catalog:8080", [], conn=conn))

    asyncio.run(run())
    assert len(conn.request_series) == 8
    # methods outside the standard set share one series (label `other`)
    assert _counts(telemetry) == {
        ("destination", "web", "catalog", "mutual_tls", "inbound|8080", "other"): (40, 0)
    }


def _cluster(service: str, tls: bool) -> Any:
    return SimpleNamespace(service_label=service, config=SimpleNamespace(tls=tls, identity=None))


def test_outbound_series_by_destination_security_route_and_method():
    telemetry = Telemetry()
    catalog, legacy = _cluster("catalog", True), _cluster("legacy", False)
    routes = {"catalog": SimpleNamespace(name="items"), "legacy": None}

    async def route_then_answer(req: Request) -> Response:
        cluster = catalog if req.authority.startswith("catalog") else legacy
        req.cluster, req.route = cluster, routes[cluster.service_label]
        return await _ok(req)

    call = outbound_telemetry(telemetry, "web")(route_then_answer)

    async def run() -> None:
        for authority, method in [
            ("catalog:8080", "GET"), ("catalog:8080", "GET"), ("catalog:8080", "PUT"),
            ("legacy:80", "GET"), ("legacy:80", "DELETE"),
        ]:  # fmt: skip
            await call(Request(method, b"/", authority, []))

    asyncio.run(run())
    assert _counts(telemetry) == {
        ("source", "web", "catalog", "mutual_tls", "items", "GET"): (2, 0),
        ("source", "web", "catalog", "mutual_tls", "items", "PUT"): (1, 0),
        ("source", "web", "legacy", "none", "default", "GET"): (1, 0),
        ("source", "web", "legacy", "none", "default", "DELETE"): (0, 1),
    }
