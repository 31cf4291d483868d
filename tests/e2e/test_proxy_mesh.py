"""Sidecars as real processes: app -> sidecar -> mTLS -> sidecar -> app.

Three catalog instances (app + sidecar each), a web sidecar allowed to call them and a
gateway sidecar that is not. Checked from outside with curl and openssl: routing,
authorization, refusal of plaintext and foreign certificates, load spreading per
policy, locality fail-over, configuration swaps and the admin endpoints.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.mesh import Mesh, Sidecar, config_doc, spiffe, upstream
from tests.helpers.pki import make_ca, make_workload
from tests.helpers.procs import http_get, processes, wait_for

pytestmark = pytest.mark.e2e


def curl(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-s", "--max-time", "10", *args], capture_output=True, text=True, timeout=timeout
    )


class World:
    def __init__(self, mesh: Mesh) -> None:
        self.mesh = mesh
        self.apps: list[int] = []
        self.catalogs: list[Sidecar] = []
        # the service port is 8080; on this one host each app listens on its own port
        self.port = 8080
        for i, zone in enumerate(("zone-a", "zone-b", "zone-b")):
            port = mesh.app(f"catalog-{i}")
            self.apps.append(port)
            self.catalogs.append(
                mesh.sidecar(
                    "catalog",
                    config_doc(
                        "catalog",
                        app_ports=[(self.port, "http", port)],
                        allowed=[spiffe("web")],
                        zone=zone,
                    ),
                )
            )
        self.web = mesh.sidecar("web", self.web_config())
        self.gateway = mesh.sidecar("gateway", config_doc("gateway", upstreams=[self.catalog()]))

    def catalog(self, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        zones = ("zone-a", "zone-b", "zone-b")
        eps = [("127.0.0.1", c.inbound, z) for c, z in zip(self.catalogs, zones, strict=True)]
        return upstream("catalog", eps, port=self.port, **kwargs)

    def web_config(self, *, zone: str = "", version: str = "1", **kwargs: Any) -> dict[str, Any]:
        return config_doc("web", upstreams=[self.catalog(**kwargs)], zone=zone, version=version)

    def via_web(self, path: str = "/", *extra: str) -> subprocess.CompletedProcess[str]:
        return curl(
            "-x",
            f"http://127.0.0.1:{self.web.outbound}",
            *extra,
            f"http://catalog:{self.port}{path}",
        )

    def served_by(self, n: int, *extra: str) -> Counter[str]:
        counts: Counter[str] = Counter()
        for _ in range(n):
            out = self.via_web("/", *extra)
            counts[out.stdout.strip()] += 1
        return counts

    def served_concurrently(self, n: int, threads: int = 6) -> Counter[str]:
        """`n` requests from `threads` clients at once to /slow/30 (in-flight counts matter)."""
        counts: Counter[str] = Counter()
        lock = threading.Lock()

        def client(k: int) -> None:
            for _ in range(k):
                out = self.via_web("/slow/30")
                with lock:
                    counts[out.stdout.strip().split()[0]] += 1

        workers = [threading.Thread(target=client, args=(n // threads,)) for _ in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(60)
        return counts

    def app_hits(self) -> int:
        return sum(int(http_get(f"http://127.0.0.1:{p}/hits")[1]) for p in self.apps)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("mesh")
    with processes() as procs:
        yield World(Mesh(tmp, procs))


def test_request_flows_through_both_sidecars_with_mtls_identity(world: World) -> None:
    out = world.via_web("/headers", "-i")
    assert out.returncode == 0, out.stderr
    head, _, body = out.stdout.partition("\n\n")
    assert head.startswith("HTTP/1.1 200")
    headers = json.loads(body)
    assert headers["x-forwarded-client-cert"] == (f"By={spiffe('catalog')};URI={spiffe('web')}")
    assert headers["x-request-id"]
    # the same through a Host header instead of proxy form
    out = curl("-H", f"Host: catalog:{world.port}", f"http://127.0.0.1:{world.web.outbound}/")
    assert out.stdout.startswith("catalog-")


def test_unknown_host_is_no_route(world: World) -> None:
    out = curl("-i", "-H", "Host: nowhere", f"http://127.0.0.1:{world.web.outbound}/")
    assert out.stdout.startswith("HTTP/1.1 404")
    assert "x-gossamer-error: no-route" in out.stdout


def test_authorization_allows_web_and_denies_gateway(world: World) -> None:
    before = world.app_hits()
    out = curl(
        "-i", "-x", f"http://127.0.0.1:{world.gateway.outbound}", f"http://catalog:{world.port}/"
    )
    assert out.stdout.startswith("HTTP/1.1 403"), out.stdout
    assert "x-gossamer-error: denied" in out.stdout
    assert world.app_hits() == before + 3  # only the /hits probes themselves
    denied = world.catalogs[0].metric(
        "gossamer_requests_total", source_service="gateway", response_code="403"
    )
    denied += sum(
        c.metric("gossamer_requests_total", source_service="gateway", response_code="403")
        for c in world.catalogs[1:]
    )
    assert denied >= 1
    assert world.via_web().stdout.startswith("catalog-")


def test_plaintext_and_foreign_certificates_are_refused(world: World, tmp_path: Path) -> None:
    target = world.catalogs[0]
    before = world.app_hits()
    # plain HTTP to the inbound port: no TLS handshake, no answer
    plain = curl("-i", f"http://127.0.0.1:{target.inbound}/")
    assert plain.returncode != 0 and not plain.stdout
    # TLS without a client certificate
    bundle = target.workload.bundle_file
    no_cert = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{target.inbound}", "-tls1_3",
         "-CAfile", str(bundle), "-quiet"],
        input="GET / HTTP/1.1\r\nHost: catalog\r\n\r\n", capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    assert "HTTP/1.1" not in no_cert.stdout
    assert "certificate required" in no_cert.stderr, no_cert.stderr
    # a certificate from another CA, with the right SPIFFE ID
    foreign = make_workload(make_ca(tmp_path / "other-ca"), "web", tmp_path / "foreign")
    bad = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{target.inbound}", "-tls1_3",
         "-CAfile", str(bundle), "-cert", str(foreign.chain_file),
         "-cert_chain", str(foreign.chain_file), "-key", str(foreign.key_file), "-quiet"],
        input="GET / HTTP/1.1\r\nHost: catalog\r\n\r\n", capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    assert "HTTP/1.1" not in bad.stdout
    assert "unknown ca" in bad.stderr, bad.stderr
    # curl with the foreign certificate fails the same way
    out = curl("--cacert", str(bundle), "--cert", str(foreign.chain_file), "--key", str(foreign.key_file),
               "-k", f"https://127.0.0.1:{target.inbound}/")  # fmt: skip
    assert out.returncode != 0 and not out.stdout
    assert world.app_hits() == before + 3
    assert target.metric("gossamer_tls_handshake_failures_total") >= 3
    # positive control: the same openssl command with web's real certificate works
    web = world.web.workload
    good = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{target.inbound}", "-tls1_3",
         "-CAfile", str(bundle), "-cert", str(web.chain_file), "-cert_chain", str(web.chain_file),
         "-key", str(web.key_file), "-quiet"],
        input="GET / HTTP/1.1\r\nHost: catalog\r\nConnection: close\r\n\r\n",
        capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    assert good.stdout.startswith("HTTP/1.1 200"), good.stderr


def test_round_robin_spreads_evenly(world: World) -> None:
    counts = world.served_by(30)
    assert counts == {"catalog-0": 10, "catalog-1": 10, "catalog-2": 10}


@pytest.mark.parametrize("policy", ["random", "least_request", "ewma"])
def test_other_policies_use_every_endpoint(world: World, policy: str) -> None:
    world.web.reconfigure(world.web_config(lb_policy=policy, version=policy))
    try:
        counts = world.served_concurrently(48)
        assert set(counts) == {"catalog-0", "catalog-1", "catalog-2"}, counts
        assert sum(counts.values()) == 48
    finally:
        world.web.reconfigure(world.web_config(version="rr"))


def test_ring_hash_keeps_a_user_on_one_endpoint(world: World) -> None:
    world.web.reconfigure(
        world.web_config(lb_policy="ring_hash", hash_header="x-user", version="ring")
    )
    try:
        for user in ("alice", "bob", "carol"):
            counts = world.served_by(6, "-H", f"x-user: {user}")
            assert len(counts) == 1, (user, counts)
        users = Counter(
            world.via_web("/", "-H", f"x-user: user-{i}").stdout.strip() for i in range(40)
        )
        assert len(users) == 3
    finally:
        world.web.reconfigure(world.web_config(version="rr2"))


def test_locality_prefers_the_own_zone_and_fails_over(world: World) -> None:
    world.web.reconfigure(world.web_config(zone="zone-a", version="zoned"))
    try:
        assert world.served_by(8) == {"catalog-0": 8}
        # zone-a's only endpoint becomes unhealthy: traffic fails over to zone-b
        cfg = world.web_config(zone="zone-a", version="zoned-2")
        cfg["clusters"][0]["endpoints"][0]["health"] = "unhealthy"
        world.web.reconfigure(cfg)
        assert world.served_by(8) == {"catalog-1": 4, "catalog-2": 4}
    finally:
        world.web.reconfigure(world.web_config(version="rr3"))


def test_configuration_swap_keeps_in_flight_requests(world: World) -> None:
    results: list[subprocess.CompletedProcess[str]] = []
    slow = threading.Thread(target=lambda: results.append(world.via_web("/slow/1500", "-i")))
    slow.start()

    def in_flight() -> bool:
        clusters = world.web.admin_json("/clusters")["clusters"]
        return any(e["active_requests"] for c in clusters for e in c["endpoints"])

    wait_for(in_flight, what="the slow request to be in flight")
    try:
        # new configuration without the catalog route, applied while the request runs
        empty = config_doc("web", version="empty")
        world.web.reconfigure(empty)
        out = curl("-i", "-H", "Host: catalog", f"http://127.0.0.1:{world.web.outbound}/")
        assert out.stdout.startswith("HTTP/1.1 404")
        # as an HTTP proxy, a host outside the mesh is passed through (here: unresolvable)
        out = world.via_web("/", "-i")
        assert out.stdout.startswith("HTTP/1.1 502") and "connect-failure" in out.stdout
        slow.join(10)
        assert results and results[0].stdout.startswith("HTTP/1.1 200"), results
    finally:
        world.web.reconfigure(world.web_config(version="back"))
    assert world.via_web().stdout.startswith("catalog-")


def test_a_bad_configuration_is_rejected_and_the_old_one_kept(world: World) -> None:
    before = world.web.admin_json("/config_dump")
    world.web.config_path.write_text("clusters: [{name: x}]")  # invalid
    world.web.process.proc.send_signal(1)  # SIGHUP
    after = world.web.admin_json("/config_dump")
    assert after["generation"] == before["generation"]
    assert world.via_web().stdout.startswith("catalog-")
    world.web.config_path.write_text(json.dumps(world.web.config))


def test_admin_endpoints(world: World) -> None:
    web = world.web
    assert web.admin_get("/live")[0] == 200
    status, body = web.admin_get("/ready")
    assert status == 200 and json.loads(body)["ready"] is True
    dump = web.admin_json("/config_dump")
    assert dump["certificate"]["spiffe_id"] == spiffe("web")
    assert dump["listeners"]["outbound"] == web.outbound
    assert dump["config"]["clusters"][0]["name"] == f"outbound|{world.port}||catalog"
    assert dump["versions"]["static"]
    clusters = web.admin_json("/clusters")["clusters"]
    endpoints = clusters[0]["endpoints"]
    assert {e["port"] for e in endpoints} == {c.inbound for c in world.catalogs}
    assert all(e["health"] == "healthy" and e["weight"] == 1 for e in endpoints)
    assert sum(e["total_requests"] for e in endpoints) > 0
    assert all(e["active_requests"] == 0 for e in endpoints)
    requests = web.metric(
        "gossamer_requests_total", reporter="source", destination_service="catalog"
    )
    assert requests > 0
    assert web.metric("gossamer_downstream_connections_total", listener="outbound") > 0
    inbound = sum(
        c.metric("gossamer_requests_total", reporter="destination", source_service="web")
        for c in world.catalogs
    )
    assert inbound > 0
    assert web.admin_get("/nope")[0] == 404


def test_ready_waits_for_the_app(world: World, tmp_path: Path) -> None:
    mesh = world.mesh
    from tests.helpers.procs import free_port

    port = free_port()
    sc = mesh.sidecar(
        "inventory", config_doc("inventory", app_ports=[(port, "http")]), wait_ready=False
    )
    wait_for(lambda: sc.admin_get("/live")[0] == 200, what="admin up")
    status, body = sc.admin_get("/ready")
    assert status == 503 and "app" in json.loads(body)["missing"][0]
    mesh.app("inventory", port=port)
    wait_for(lambda: sc.admin_get("/ready")[0] == 200, what="ready once the app listens")
