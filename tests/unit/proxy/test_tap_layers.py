"""The telemetry layers feed the tap only while one is open: inbound and outbound
records with the identities of both sides, nothing at all while idle."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from gossamer.contract import mesh_pb2
from gossamer.proxy.config import AppPort
from gossamer.proxy.service import Request, Response
from gossamer.proxy.telemetry.layers import inbound_telemetry, outbound_telemetry
from gossamer.proxy.telemetry.wiring import Telemetry
from gossamer.proxy.transport.http1.conns import ConnectionInfo

WEB = "spiffe://gossamer.local/ns/default/sa/web"
CATALOG = "spiffe://gossamer.local/ns/default/sa/catalog"


async def _ok(req: Request) -> Response:
    return Response(201, [(b"set-cookie", b"secret")], b"hello")


def test_inbound_records_only_while_a_tap_is_open() -> None:
    telemetry = Telemetry()
    call = inbound_telemetry(telemetry, "catalog", lambda: CATALOG)(_ok)
    conn = ConnectionInfo(
        "inbound", "10.0.0.2", peer_identity=WEB, security="mutual_tls", app_port=AppPort(8080)
    )
    tap = telemetry.tap

    async def one() -> None:
        headers = [(b"authorization", b"Bearer abc")]
        await call(Request("POST", b"/items?id=1", "catalog:8080", headers, conn=conn))

    asyncio.run(one())
    assert tap.offered_total == 0 and tap.queue == []
    tap.open(mesh_pb2.TapOpen(id="t1"))
    asyncio.run(one())
    ((tap_id, record),) = tap.queue
    assert tap_id == "t1"
    assert (record.direction, record.source, record.destination) == ("inbound", WEB, CATALOG)
    assert (record.method, record.path, record.status, record.bytes) == ("POST", "/items", 201, 5)
    assert b"abc" not in record.SerializeToString() and b"secret" not in record.SerializeToString()


def test_outbound_records_carry_the_callee_identity_only_over_mtls() -> None:
    telemetry = Telemetry()
    secure = SimpleNamespace(
        service_label="catalog", config=SimpleNamespace(tls=True, identity=CATALOG)
    )
    plain = SimpleNamespace(
        service_label="legacy", config=SimpleNamespace(tls=False, identity=None)
    )

    async def route(req: Request) -> Response:
        req.cluster = secure if req.authority.startswith("catalog") else plain
        return await _ok(req)

    call = outbound_telemetry(telemetry, "web", lambda: WEB)(route)
    telemetry.tap.open(mesh_pb2.TapOpen(id="t1", to="catalog"))
    telemetry.tap.open(mesh_pb2.TapOpen(id="t2", to="legacy"))

    async def run() -> None:
        await call(Request("GET", b"/a", "catalog:8080", []))
        await call(Request("GET", b"/b", "legacy:80", []))

    asyncio.run(run())
    got = {tap_id: r for tap_id, r in telemetry.tap.queue}
    assert (got["t1"].source, got["t1"].destination, got["t1"].path) == (WEB, CATALOG, "/a")
    assert (got["t2"].source, got["t2"].destination, got["t2"].path) == (WEB, "", "/b")
    assert {r.direction for r in got.values()} == {"outbound"}
