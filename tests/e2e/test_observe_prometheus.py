"""Golden metrics end to end on real sidecars: `gossamer stat/edges/top`, live through the
control plane and through a real Prometheus found by `/v1/http_sd`.

One mesh for the module (tests/helpers/observed_mesh.py): a real `gossamer control`,
real sidecars with mutual TLS, apps in a chain loadgen -> web -> catalog -> inventory,
`RATE` requests per second into web, inventory failing exactly one request in
`FAIL_EVERY` (80% success) while web and catalog absorb the failure (100%), and
answering after 60 ms. The CLI (a subprocess) must read those figures back: success
rates within 5 points, request rates within 25%, every service meshed, medians in the
right latency bucket; `edges` shows the SPIFFE IDs
of the mTLS handshakes. A real Prometheus (Debian's package) finds the sidecars' metrics
ports only through `/v1/http_sd` with a viewer token from a file, scrapes them, and
`gossamer stat --prometheus URL` must show the same figures.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gossamer.certs.ca import CertificateAuthority
from gossamer.contract.identity import ServiceKey
from gossamer.contract.xds import sni
from tests.helpers.observed_mesh import FAIL_EVERY, RATE, TD, ObservedMesh, observed_mesh, spiffe
from tests.helpers.pki import make_workload
from tests.helpers.procs import wait_for
from tests.helpers.prometheus import running_prometheus, values

pytestmark = pytest.mark.e2e

CHAIN = ("web", "catalog", "inventory")
SUCCESS = {"web": 1.0, "catalog": 1.0, "inventory": 1.0 - 1.0 / FAIL_EVERY}
DELAY_MS = 60  # inventory's app answers after 60 ms: inside the (50 ms, 100 ms] bucket


@pytest.fixture(scope="module")
def om(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObservedMesh]:
    with observed_mesh(tmp_path_factory.mktemp("observed"), delay_ms=DELAY_MS) as mesh:
        # a first question starts the control plane's scrapes (on demand): 8 s later a
        # 10 s window spans two scrapes of steady traffic
        mesh.cli_json("stat", "-w", "10s")
        time.sleep(8)
        mesh.wait_until_traffic_seen(0)
        yield mesh


def by_name(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in rows}


def check_services(rows: dict[str, dict[str, Any]]) -> None:
    """The known shape: every service of the chain serves RATE, inventory fails 20%."""
    assert set(CHAIN) <= set(rows), rows
    for name in CHAIN:
        row = rows[name]
        assert row["meshed"] == 1 and row["instances"] == 1, row
        assert row["rps"] == pytest.approx(RATE, rel=0.25), row
        assert row["success_rate"] == pytest.approx(SUCCESS[name], abs=0.05), row
        # every request waits for inventory's 60 ms: the median is in the histogram's
        # (50, 100] ms bucket for inventory, at or above 50 ms for its callers
        assert row["latency_p50_ms"] is not None and row["latency_p50_ms"] >= 50, row
        if name == "inventory":
            assert row["latency_p50_ms"] <= 100, row
        assert row["latency_p99_ms"] >= row["latency_p95_ms"] >= row["latency_p50_ms"], row
        assert row["tcp_connections"] is not None and row["tcp_connections"] >= 1, row


def check_edges(edges: list[dict[str, Any]]) -> None:
    found = {(e["source"], e["destination"]): e for e in edges}
    for src, dst in (("loadgen", "web"), ("web", "catalog"), ("catalog", "inventory")):
        edge = found[(src, dst)]
        # the identities the callee's sidecar saw in the mTLS handshake
        assert edge["client_identities"] == [spiffe(src)], edge
        assert edge["server_identities"] == [spiffe(dst)], edge
        assert edge["secured"] is True, edge
        assert edge["rps"] == pytest.approx(RATE, rel=0.25), edge
        assert edge["success_rate"] == pytest.approx(SUCCESS[dst], abs=0.05), edge
    assert set(found) == {("loadgen", "web"), ("web", "catalog"), ("catalog", "inventory")}


def check_routes(routes: list[dict[str, Any]]) -> None:
    found = {(r["source"], r["destination"]): r for r in routes}
    for src, dst in (("loadgen", "web"), ("web", "catalog"), ("catalog", "inventory")):
        route = found[(src, dst)]
        assert route["route"] == f"{dst}.default:8080/default", route
        assert route["method"] == "GET" and route["reporter"] == "source", route
        assert route["rps"] == pytest.approx(RATE, rel=0.25), route
        assert route["success_rate"] == pytest.approx(SUCCESS[dst], abs=0.05), route


def test_stat_live_through_the_control_plane(om: ObservedMesh) -> None:
    data = om.cli_json("stat", "-w", "10s")
    assert data["source"] == "live" and data["window_seconds"] == 10.0
    rows = by_name(data["services"])
    check_services(rows)
    # the load generator's sidecar is meshed and receives nothing
    assert rows["loadgen"]["meshed"] == 1 and rows["loadgen"]["rps"] == 0.0

    # one service, and the table for people
    data = om.cli_json("stat", "inventory", "-w", "10s")
    assert [r["name"] for r in data["services"]] == ["inventory"]
    code, out, err = om.cli("stat", "-w", "10s")
    assert code == 0, err
    header, *lines = [line for line in out.splitlines() if line.strip()]
    assert header.split() == [
        "NAME", "MESHED", "SUCCESS", "RPS", "LATENCY_P50", "LATENCY_P95", "LATENCY_P99",
        "TCP_CONN",
    ]  # fmt: skip
    inventory = next(line.split() for line in lines if line.startswith("inventory"))
    assert inventory[1] == "1/1"
    assert float(inventory[2].rstrip("%")) == pytest.approx(80, abs=5)


def test_edges_live_carry_the_handshake_identities(om: ObservedMesh) -> None:
    data = om.cli_json("edges", "-w", "10s")
    assert data["source"] == "live"
    check_edges(data["edges"])


def test_top_live_lists_the_routes(om: ObservedMesh) -> None:
    data = om.cli_json("top", "-w", "10s")
    assert data["source"] == "live"
    check_routes(data["routes"])


def test_a_wrong_token_is_one_clear_line(om: ObservedMesh) -> None:
    code, _, err = om.cli("stat", token="gsa1_nope")
    assert code != 0 and "refused the token" in err and "Traceback" not in err


def test_stat_through_real_prometheus(om: ObservedMesh, tmp_path: Path) -> None:
    token_file = tmp_path / "prometheus.token"  # a viewer token, as inject hands it out
    token_file.write_text(om.viewer_token("prometheus") + "\n")
    token_file.chmod(0o600)
    with running_prometheus(
        tmp_path / "prom", f"{om.api_url}/v1/http_sd", credentials_file=token_file
    ) as prom:
        # discovered through http_sd only, with the registry's labels
        up = prom.wait_for_query(
            'up{job="gossamer-sidecars"} == 1', lambda r: len(r) == 4, timeout=60
        )
        assert {s["metric"]["gossamer_service"] for s in up} == {*CHAIN, "loadgen"}
        assert {s["metric"]["instance"] for s in up} == {
            f"127.0.0.1:{sc.metrics}" for sc in om.sidecars.values()
        }
        # let 12 s of scrapes (1 s apart) of steady traffic fill the 10 s window
        prom.wait_for_query(
            'count_over_time(up{job="gossamer-sidecars",gossamer_service="inventory"}[1m])',
            lambda r: bool(r) and values(r)[0] >= 12,
            timeout=60,
        )
        expr = (
            'sum(rate(gossamer_requests_total{reporter="destination",'
            'destination_service="inventory"}[10s]))'
        )
        assert values(prom.query(expr))[0] == pytest.approx(RATE, rel=0.25)

        args = ("--prometheus", prom.url, "-w", "10s")
        data = om.cli_json("stat", *args, api=False)
        assert data["source"] == "prometheus"
        check_services(by_name(data["services"]))
        data = om.cli_json("edges", *args, api=False)
        check_edges(data["edges"])
        data = om.cli_json("top", *args, api=False)
        check_routes(data["routes"])


def _established(port: int) -> int:
    """TCP connections established to 127.0.0.1:`port` (from `ss`)."""
    out = subprocess.run(
        ["ss", "-Htn", "state", "established", f"sport = :{port}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return len([line for line in out.splitlines() if line.strip()])


def test_open_connections_are_the_sockets_the_sidecar_holds(om: ObservedMesh) -> None:
    """The connection series of an HTTP service count what really is open: opened minus
    closed equals the established sockets on its inbound port (closing is checked by
    the next test: under steady pooled traffic nothing may close here)."""
    for name in CHAIN:
        sc = om.sidecars[name]

        def agree(sc: Any = sc) -> bool:
            opened = sc.metric("gossamer_tcp_connections_opened_total", reporter="destination")
            closed = sc.metric("gossamer_tcp_connections_closed_total", reporter="destination")
            return bool(opened >= 1 and opened - closed == _established(sc.inbound))

        wait_for(agree, timeout=20, interval=0.5, what=f"{name}'s open connections")


def test_a_closed_connection_is_counted_closed(om: ObservedMesh, tmp_path: Path) -> None:
    """One mTLS connection of our own (a leaf for `probe` from the mesh's CA) carrying one
    HTTP request to inventory: its sidecar counts it opened with both principals, and
    closed once we close it. (Last in the module: it adds an edge probe -> inventory.)"""
    ca = CertificateAuthority.load(om.mesh.tmp / "ca")
    probe = make_workload(ca, "probe", tmp_path / "probe")
    context = ssl.create_default_context(cafile=str(probe.bundle_file))
    context.load_cert_chain(probe.chain_file, probe.key_file)
    context.check_hostname = False  # the sidecar's leaf names its SPIFFE ID, not a host
    inventory = om.sidecars["inventory"]
    labels = {
        "reporter": "destination",
        "source_principal": spiffe("probe"),
        "destination_principal": spiffe("inventory"),
    }
    name = sni(TD, ServiceKey("default", "inventory"), 8080)
    with (
        socket.create_connection(("127.0.0.1", inventory.inbound), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=name) as tls,
    ):
        tls.sendall(b"GET /hits HTTP/1.1\r\nHost: inventory\r\n\r\n")
        assert tls.recv(65536).startswith(b"HTTP/1.1 200")
        opened = inventory.metric("gossamer_tcp_connections_opened_total", **labels)
        closed = inventory.metric("gossamer_tcp_connections_closed_total", **labels)
        assert (opened, closed) == (1, 0)
    wait_for(
        lambda: inventory.metric("gossamer_tcp_connections_closed_total", **labels) == 1,
        timeout=20,
        what="the connection counted closed",
    )
    assert inventory.metric("gossamer_tcp_connections_opened_total", **labels) == 1
