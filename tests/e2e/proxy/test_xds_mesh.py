"""A mesh run by the control plane, all real processes: `gossamer control`, sidecars
bootstrapped with join tokens, echo apps. Requests go app -> sidecar -> mTLS -> sidecar
-> app through the routes the control plane pushed; authorization comes from mesh.yaml;
instances register themselves and load spreads over them; metrics and /config_dump
agree with what the control plane reports."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from collections import Counter

import pytest

from gossamer.proxy.agent.bootstrap import bootstrap
from gossamer.proxy.transport.tls_contexts import _load_chain, sni_for
from tests.helpers.procs import free_port, processes, wait_for
from tests.helpers.xds_mesh import XdsMesh, XdsSidecar, http_service, spiffe

pytestmark = pytest.mark.e2e

SERVICES = [
    http_service("web"),
    http_service(
        "catalog",
        retries={"attempts": 2, "on": ["connect-failure", "reset", 503]},
        authorization={"allow": [spiffe("web")]},
    ),
    http_service("vault", authorization={"allow": [spiffe("catalog")]}),
]


class World:
    def __init__(self, mesh: XdsMesh) -> None:
        self.mesh = mesh
        mesh.start_control()
        self.catalog_apps = [mesh.app(f"catalog-{i}") for i in range(3)]
        self.catalogs = [mesh.sidecar("catalog", p) for p in self.catalog_apps]
        self.vault_app = mesh.app("vault")
        self.vault = mesh.sidecar("vault", self.vault_app)
        self.web = mesh.sidecar("web")  # no app port: a pure client


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("xds-mesh")
    with processes() as procs:
        yield World(XdsMesh(tmp, procs, SERVICES))


def test_requests_flow_through_pushed_routes(world: World) -> None:
    status, body = world.web.get("catalog:8080", "/headers")
    assert status == 200, body
    headers = json.loads(body)
    # the callee sidecar saw web's SPIFFE ID over mTLS and told the app
    assert headers["x-forwarded-client-cert"] == f"By={spiffe('catalog')};URI={spiffe('web')}"
    for host in ("catalog", "catalog.default", "catalog.default.svc.gossamer.local"):
        status, body = world.web.get(host, "/")
        assert status == 200 and body.startswith(b"catalog-"), (host, status, body)


def test_load_spreads_over_registered_instances(world: World) -> None:
    served = Counter(world.web.get("catalog", "/")[1].decode().strip() for _ in range(60))
    assert set(served) == {f"catalog-{i}" for i in range(3)}, served
    assert min(served.values()) >= 15, served  # round robin: about 20 each
    endpoints = world.web.endpoints("outbound|8080||catalog")
    assert sorted(e["port"] for e in endpoints) == sorted(c.inbound for c in world.catalogs)


def _mtls_get(port: int, sni: str, creds, path: str = "/") -> tuple[int, dict[str, str], bytes]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(cadata=creds.bundle_pem.decode())
    _load_chain(ctx, creds.chain_pem, creds.key_pem)
    # http.client takes the SNI from the host it connects to: connect by hand
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    conn.sock = ctx.wrap_socket(raw, server_hostname=sni)
    conn.request("GET", path, headers={"Host": "vault"})
    resp = conn.getresponse()
    out = resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    conn.close()
    return out


async def test_authorization_from_mesh_yaml(world: World) -> None:
    # web may not call vault: the control plane does not even give it a route
    status, _ = world.web.get("vault", "/")
    assert status == 404
    # a caller holding a real web certificate that goes to vault's sidecar directly is
    # refused there, before the app sees anything
    mesh = world.mesh
    creds = await bootstrap(
        "127.0.0.1", mesh.ports["bootstrap"], mesh.token("web"), "web", "default"
    )
    sni = sni_for("vault", "default", 8080, "gossamer.local")
    hits_before = _hits(world.vault_app)
    status, headers, _ = _mtls_get(world.vault.inbound, sni, creds)
    assert status == 403 and headers["x-gossamer-error"] == "denied"
    assert _hits(world.vault_app) == hits_before + 1  # only our /hits probe
    assert (
        world.vault.metric("gossamer_requests_total", source_service="web", response_code="403")
        == 1
    )
    # catalog is allowed: the same request with catalog's certificate reaches the app
    creds = await bootstrap(
        "127.0.0.1", mesh.ports["bootstrap"], mesh.token("catalog"), "catalog", "default"
    )
    status, headers, body = _mtls_get(world.vault.inbound, sni, creds)
    assert status == 200 and body == b"vault\n"


def _hits(port: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/hits")
    n = int(conn.getresponse().read())
    conn.close()
    return n


def test_metrics_both_reporters_with_mutual_tls(world: World) -> None:
    for _ in range(5):
        assert world.web.get("catalog", "/")[0] == 200
    sent = world.web.metric(
        "gossamer_requests_total",
        reporter="source",
        source_service="web",
        destination_service="catalog",
        connection_security_policy="mutual_tls",
        response_code="200",
    )
    received = sum(
        c.metric(
            "gossamer_requests_total",
            reporter="destination",
            source_service="web",
            destination_service="catalog",
            connection_security_policy="mutual_tls",
        )
        for c in world.catalogs
    )
    assert sent >= 5 and received == sent
    durations = world.web.metric(
        "gossamer_request_duration_seconds_count", reporter="source", destination_service="catalog"
    )
    assert durations == sent
    expiry = world.web.metric(
        "gossamer_certificate_expiry_timestamp_seconds", identity=spiffe("web")
    )
    assert expiry > 0
    assert world.web.metric("gossamer_xds_updates_total", type="CDS") >= 1


def test_config_dump_agrees_with_the_control_plane(world: World) -> None:
    dump = world.web.admin_json("/config_dump")
    xds = dump["xds"]
    assert xds["connected"] and xds["waiting_for"] == []
    status = world.mesh.status()
    node = next(s for s in status["sidecars"] if s["node_id"].endswith("~" + world.web.instance))
    for short, state in node["types"].items():
        assert xds["types"][short]["version"] == state["acked_version"], short
    clusters = {c["name"] for c in dump["config"]["clusters"]}
    assert "outbound|8080||catalog.default" in clusters
    assert "outbound|8080||vault.default" not in clusters
    names = [r.get("name") for r in xds["types"]["CDS"]["resources"]]
    assert "outbound|8080||catalog.default" in names
    assert all("note" not in r for r in xds["types"]["LDS"]["resources"])  # all decodable


def test_ready_says_what_is_missing(world: World) -> None:
    # an app that is not listening yet: the sidecar has certificate and configuration
    port = free_port()
    sc: XdsSidecar = world.mesh.sidecar("catalog", port, wait_ready=False)

    def only_the_app_missing() -> bool:
        missing = sc.admin_json("/ready")["missing"]
        return len(missing) == 1 and missing[0].startswith("app (")

    wait_for(only_the_app_missing, timeout=30, what="only the app missing")
    assert sc.admin_get("/ready")[0] == 503
    world.mesh.app("catalog-late", port)
    wait_for(sc.ready, timeout=15, what="ready once the app listens")
