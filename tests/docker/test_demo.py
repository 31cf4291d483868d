"""The root compose.yaml demo on a real Docker Engine, as a user runs it.

`docker compose -f compose.yaml -f tests/docker/compose.override.yaml up` (the override
only swaps in local Jaeger and Prometheus images; `./dev docker` builds them and
gossamer:latest). One project for the module; the tests run in file order and the last
one takes the project down and checks that nothing is left. Loss is counted by the
demo's own load generator (cumulative counters in its log) and by a load of the test's
own from the host to web's published port.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gossamer.contract.ports import ADMIN_PORT, INBOUND_PORT, METRICS_PORT
from tests.docker.demo_load import HostLoad, loadgen_counts, loadgen_reports
from tests.docker.pcap import tcp_segments
from tests.helpers.docker_compose import ComposeProject, docker, require_engine

pytestmark = [pytest.mark.docker, pytest.mark.e2e, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
FRONT = "http://127.0.0.1:8080/"
API = "http://127.0.0.1:15014"
JAEGER = "http://127.0.0.1:16686"
PROMETHEUS = "http://127.0.0.1:9090"
CALLER = {"web": "loadgen", "catalog": "web", "inventory": "catalog"}
APP_PORT = 8080
SIDECARS = ("web", "catalog", "catalog-2", "inventory", "loadgen")


def get_json(url: str, token: str | None = None, timeout: float = 5.0) -> Any:
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def wait_for(what: str, check: Any, timeout: float = 60.0, every: float = 1.0) -> Any:
    """Poll check() until it returns something truthy; fail with its last answer."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:  # any failure means "not yet"
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(every)
    pytest.fail(f"{what}: not reached in {timeout:.0f} s (last: {last!r})")


@pytest.fixture(scope="module")
def demo() -> Iterator[ComposeProject]:
    project = ComposeProject(
        "gossamer-ci-demo",
        [REPO / "compose.yaml", REPO / "tests/docker/compose.override.yaml"],
        cwd=REPO,
    )
    require_engine()
    project.down_clean()  # a previous run that was killed midway
    try:
        project.up(timeout=180)
        wait_for("the shop answers on 127.0.0.1:8080", _front_ok, timeout=60)
        yield project
    finally:
        project.down_clean()


def _front_ok() -> bool:
    with urllib.request.urlopen(FRONT, timeout=5) as resp:
        body = json.loads(resp.read())
    return resp.status == 200 and len(body["path"]) == 3 and bool(body["items"])


def test_zero_failed_requests_over_60_s_while_inventory_fails_5_percent(demo: ComposeProject):
    def inventory_503s() -> float:
        query = 'sum(gossamer_requests_total{reporter="destination",destination_service="inventory",response_code="503"})'
        url = f"{PROMETHEUS}/api/v1/query?query={urllib.parse.quote(query)}"
        result = get_json(url)["data"]["result"]
        return float(result[0]["value"][1]) if result else 0.0

    wait_for("loadgen reports", lambda: loadgen_counts(demo.logs("loadgen")), timeout=30)
    start = loadgen_counts(demo.logs("loadgen"))
    failed_503_start = inventory_503s()
    time.sleep(62)
    end = loadgen_counts(demo.logs("loadgen"))
    assert start is not None and end is not None
    sent, failed = end[0] - start[0], end[1] - start[1]
    print(f"loadgen over 60 s: sent={sent} failed={failed}")
    assert sent >= 250, f"loadgen sent only {sent} requests in 60 s"
    assert failed == 0, f"{failed} of {sent} requests failed"
    # the zero is not for want of faults: inventory did answer 503s meanwhile
    answered_503 = wait_for(
        "inventory 503s in Prometheus", lambda: inventory_503s() - failed_503_start, 30
    )
    print(f"inventory answered {answered_503:.0f} 503s meanwhile, all retried")


def test_one_trace_spans_loadgen_web_catalog_inventory_with_parent_links(demo: ComposeProject):
    def full_trace() -> dict[str, Any] | None:
        traces = get_json(f"{JAEGER}/api/traces?service=loadgen&limit=50&lookback=1h")["data"]
        for trace in traces:
            services = {p["serviceName"] for p in trace["processes"].values()}
            if {"loadgen", "web", "catalog", "inventory"} <= services:
                return trace  # type: ignore[no-any-return]
        return None

    trace = wait_for("a trace through all four services in Jaeger", full_trace, timeout=60, every=2)
    spans = {s["spanID"]: s for s in trace["spans"]}
    service = {sid: trace["processes"][s["processID"]]["serviceName"] for sid, s in spans.items()}

    def kind(span: dict[str, Any]) -> str:
        return next((t["value"] for t in span["tags"] if t["key"] == "span.kind"), "")

    def parent(span: dict[str, Any]) -> str | None:
        refs = [r for r in span["references"] if r["refType"] == "CHILD_OF"]
        return refs[0]["spanID"] if refs else None

    roots = [sid for sid, s in spans.items() if parent(s) is None]
    assert len(roots) == 1 and service[roots[0]] == "loadgen", "one root, at the load generator"
    for sid, span in spans.items():
        p = parent(span)
        assert p is None or p in spans, f"{service[sid]} span {sid} has a parent outside the trace"
        if kind(span) == "server" and service[sid] in CALLER:
            assert p is not None and kind(spans[p]) == "client", f"{service[sid]} server span"
            assert service[p] == CALLER[service[sid]], f"{service[sid]} called by {service[p]}"
    servers = sorted(service[sid] for sid, s in spans.items() if kind(s) == "server")
    assert servers == ["catalog", "inventory", "web"] or set(servers) == set(CALLER), servers


def _tags(span: dict[str, Any]) -> dict[str, Any]:
    return {t["key"]: t["value"] for t in span["tags"]}


def _failed(span: dict[str, Any]) -> bool:
    tags = _tags(span)
    return tags.get("error") in (True, "true") or tags.get("otel.status_code") == "ERROR"


def test_a_retried_request_reads_well_in_jaeger(demo: ComposeProject, artifacts_dir: Path):
    """Sampled requests from the host (inventory answers 5% with 503, the mesh retries
    them): Jaeger shows, for one recovered at catalog's sidecar, `GET /* -> inventory`
    (not an error) with attempts `#1` (503, error) and `#2` (resend_count 1), each with
    the endpoint's address, and under each inventory's server span `GET /*` with the
    caller's address; web's spans read `GET /*` and `GET /* -> catalog`."""
    import random

    rng = random.Random()
    retried = "GET /* -> inventory #2"

    def recovered_on_second_try(trace: dict[str, Any]) -> bool:
        """Catalog's tries `#1` and `#2` (no `#3`: not a request that failed twice),
        inventory's server spans under both, and web's client span arrived (each
        sidecar exports its spans in its own batches)."""
        names = [
            (trace["processes"][s["processID"]]["serviceName"], s["operationName"])
            for s in trace["spans"]
        ]
        return (
            ("catalog", "GET /* -> inventory #3") not in names
            and names.count(("catalog", "GET /* -> inventory")) == 1
            and names.count(("inventory", "GET /*")) >= 2
            and ("web", "GET /* -> catalog") in names
        )

    def find() -> dict[str, Any] | None:
        for _ in range(40):  # 5% of requests are retried: some of these will be
            headers = {
                "traceparent": f"00-{rng.getrandbits(128):032x}-{rng.getrandbits(64):016x}-01"
            }
            with urllib.request.urlopen(urllib.request.Request(FRONT, headers=headers), timeout=5):
                pass
        query = urllib.parse.urlencode(
            {"service": "catalog", "operation": retried, "lookback": "1h", "limit": "50"}
        )
        found = get_json(f"{JAEGER}/api/traces?{query}")["data"]
        return next((t for t in found if recovered_on_second_try(t)), None)

    trace = wait_for("a retried request's trace in Jaeger", find, timeout=120, every=1)
    # as Jaeger's API gave it (the README's trace tree is drawn from one of these)
    (artifacts_dir / "jaeger-retried-trace.json").write_text(json.dumps(trace, indent=1))
    spans = {s["spanID"]: s for s in trace["spans"]}
    service = {sid: trace["processes"][s["processID"]]["serviceName"] for sid, s in spans.items()}
    by_name: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for sid, span in spans.items():
        by_name.setdefault((service[sid], span["operationName"]), []).append(span)

    def parent(span: dict[str, Any]) -> str | None:
        refs = [r for r in span["references"] if r["refType"] == "CHILD_OF"]
        return refs[0]["spanID"] if refs else None

    print(sorted(by_name))
    for hop in (("web", "GET /* -> catalog"), ("catalog", "GET /*")):
        assert hop in by_name, (hop, sorted(by_name))
    (logical,) = by_name["catalog", "GET /* -> inventory"]
    (first,) = by_name["catalog", "GET /* -> inventory #1"]
    (second,) = by_name["catalog", retried]
    assert not _failed(logical), _tags(logical)
    assert _tags(logical)["http.response.status_code"] == 200
    assert _failed(first) and _tags(first)["http.response.status_code"] == 503
    assert "http.request.resend_count" not in _tags(first)
    assert _tags(second)["http.request.resend_count"] == 1
    assert _tags(second)["gossamer.retry.reason"] == "503"
    assert not _failed(second)
    for attempt in (first, second):
        assert parent(attempt) == logical["spanID"]
        tags = _tags(attempt)
        assert tags["network.peer.address"] and isinstance(tags["network.peer.port"], int)
        assert tags["http.route"] == "/*"
    inventory_servers = by_name["inventory", "GET /*"]
    under = {parent(s): s for s in inventory_servers}
    assert under.keys() >= {first["spanID"], second["spanID"]}
    assert _tags(under[first["spanID"]])["http.response.status_code"] == 503
    assert _tags(under[second["spanID"]])["http.response.status_code"] == 200
    for sid, span in spans.items():
        tags = _tags(span)
        kind = tags.get("span.kind")
        if kind == "server" and service[sid] in ("catalog", "inventory"):
            assert tags["client.address"], (service[sid], tags)  # the caller's address
            assert tags["http.route"] == "/*"
        if kind == "client" and "#" in span["operationName"]:
            assert tags["network.peer.address"], (service[sid], tags)  # the endpoint's


def test_dashboard_trace_links_open_jaeger_search_that_finds_the_trace(demo: ComposeProject):
    token = demo.exec("gossamer-control", ["cat", "/var/lib/gossamer/admin-token"]).stdout.strip()
    overview = get_json(f"{API}/v1/overview", token)
    links = {node["id"]: node["traces_url"] for node in overview["graph"]["nodes"]}
    assert set(CALLER) <= set(links)
    for name in CALLER:
        link = links[name]
        assert link.startswith(f"{JAEGER}/search?service={name}&"), link
        # Jaeger's UI renders its search page from the same query on its API
        query = link.split("?", 1)[1]
        traces = get_json(f"{JAEGER}/api/traces?{query}")["data"]
        assert traces, f"Jaeger finds no trace for the dashboard's link of {name}"


def test_prometheus_discovers_sidecars_and_stat_shows_live_rates(demo: ComposeProject):
    def sidecar_targets() -> list[dict[str, Any]] | None:
        active = get_json(f"{PROMETHEUS}/api/v1/targets?state=active")["data"]["activeTargets"]
        ours = [t for t in active if t["labels"]["job"] == "gossamer-sidecars"]
        healthy = [t for t in ours if t["health"] == "up"]
        return ours if len(healthy) >= len(SIDECARS) else None

    targets = wait_for("Prometheus scrapes every sidecar through http_sd", sidecar_targets, 60, 2)
    assert len(targets) == len(SIDECARS), [t["labels"] for t in targets]
    # their metrics ports, found with the viewer token gossamer-bootstrap made for it
    assert all(t["labels"]["instance"].endswith(f":{METRICS_PORT}") for t in targets), targets
    with pytest.raises(urllib.error.HTTPError) as refused:  # and nobody finds them without
        get_json(f"{API}/v1/http_sd")
    assert refused.value.code == 401

    def rates() -> dict[str, float] | None:
        out = subprocess.run(
            [str(REPO / ".venv/bin/gossamer"), "stat", "--prometheus", PROMETHEUS, "-o", "json"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        found = {s["name"]: s["rps"] for s in json.loads(out)["services"]}
        return found if all(found.get(n, 0) > 1 for n in CALLER) else None

    found = wait_for("gossamer stat --prometheus shows live rates", rates, 60, 3)
    print(f"gossamer stat --prometheus rps: {found}")


_PROBE_PORTS = """
import http.client, json, sys
def get(host, port, path):
    try:
        c = http.client.HTTPConnection(host, port, timeout=5)
        c.request("GET", path)
        r = c.getresponse()
        return [r.status, r.read().decode("utf-8", "replace")[:20000]]
    except Exception as exc:
        return [type(exc).__name__, ""]
print(json.dumps({h: {p: get(h, int(p.split("/")[0]), "/" + p.split("/", 1)[1])
                      for p in sys.argv[2:]} for h in sys.argv[1].split(",")}))
"""


def test_admin_ports_stay_inside_their_namespaces(demo: ComposeProject):
    """From another container on the network: each sidecar's metrics port answers
    /metrics and nothing else; its admin port (/config_dump: policies and endpoints)
    is not there (it listens on 127.0.0.1, and the iptables rules send a connection to
    it to the inbound port, which wants mutual TLS)."""
    hosts = ("web", "catalog", "inventory")
    paths = (f"{METRICS_PORT}/metrics", f"{METRICS_PORT}/config_dump", f"{ADMIN_PORT}/config_dump")
    out = demo.exec(
        "gossamer-control", ["python3", "-c", _PROBE_PORTS, ",".join(hosts), *paths]
    ).stdout
    seen = json.loads(out)
    for host in hosts:
        metrics, dump_on_metrics, dump_on_admin = (seen[host][p] for p in paths)
        assert metrics[0] == 200 and "gossamer_requests_total" in metrics[1], (host, metrics)
        assert dump_on_metrics[0] == 404, (host, dump_on_metrics)
        assert not isinstance(dump_on_admin[0], int), (host, dump_on_admin)
    # inside the namespace (the health check's way) the admin port answers
    script = (
        "import urllib.request; print(urllib.request.urlopen("
        f"'http://127.0.0.1:{ADMIN_PORT}/config_dump?resources=0', timeout=5).status)"
    )
    assert demo.exec("web-proxy", ["python3", "-c", script]).stdout.strip() == "200"


def test_app_connections_cross_the_network_as_mutual_tls_only(demo: ComposeProject, tmp_path: Path):
    """web's app calls http://catalog:8080 in plain HTTP; on the bridge that call is TLS
    records between sidecars (their inbound port), and no app port carries any data
    except the host's own requests to web's published port."""
    network_name = f"{demo.name}_default"
    network, gateway = docker(
        "network", "inspect", "-f", "{{.Id}} {{(index .IPAM.Config 0).Gateway}}", network_name
    ).stdout.split()
    pcap = tmp_path / "bridge.pcap"
    capture = subprocess.Popen(
        ["tcpdump", "-i", f"br-{network[:12]}", "-U", "-s", "0", "-w", str(pcap), "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1.0)
        for _ in range(10):
            assert _front_ok()
        time.sleep(1.0)
    finally:
        capture.terminate()
        capture.wait(timeout=10)
    segments = tcp_segments(pcap.read_bytes())
    mesh = [s for s in segments if INBOUND_PORT in (s.sport, s.dport)]
    app = [s for s in segments if APP_PORT in (s.sport, s.dport) and gateway not in (s.src, s.dst)]
    tls = [s for s in mesh if s.payload[:1] in (b"\x16", b"\x17") and s.payload[1:3] == b"\x03\x03"]
    plain = [s.payload[:40] for s in mesh if b"HTTP/1.1" in s.payload or b"in_stock" in s.payload]
    print(
        f"bridge capture: {len(mesh)} segments between sidecars, {len(tls)} start a TLS "
        f"record; {len(app)} on app ports"
    )
    assert len(mesh) >= 40, f"only {len(mesh)} segments between sidecars"
    assert not plain, f"plaintext HTTP between sidecars: {plain[:3]}"
    # a TLS record longer than a segment continues in the next one, so not every
    # segment starts a record; the demo's records fit in one segment nearly always
    assert len(tls) >= 0.8 * len(mesh), "segments between sidecars start TLS records"
    assert not app, f"app-to-app traffic on the bridge: {app[:3]}"

    # a container outside the mesh, on the same network, speaking plain HTTP to catalog
    probe = (
        "import http.client\n"
        "c = http.client.HTTPConnection('catalog', 8080, timeout=5)\n"
        "try:\n"
        "    c.request('GET', '/items'); r = c.getresponse(); print('STATUS', r.status, r.read()[:60])\n"
        "except Exception as e:\n"
        "    print('REFUSED', type(e).__name__)\n"
    )
    out = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            f"--network={network_name}",
            "--entrypoint",
            "python3",
            "gossamer:latest",
            "-c",
            probe,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    print(f"plaintext from outside the mesh: {out}")
    assert out.startswith("REFUSED"), out


def test_faults_lose_no_idempotent_request(demo: ComposeProject):
    """Kill a catalog app (its sidecar stays), restart the control plane, drain a sidecar."""
    start = loadgen_counts(demo.logs("loadgen"))
    assert start is not None
    with HostLoad(FRONT, rate=10) as host:
        time.sleep(3)
        demo.compose("kill", "catalog")
        time.sleep(8)
        demo.compose("start", "catalog")
        time.sleep(5)
        demo.compose("restart", "gossamer-control")
        wait_for(
            "the control plane is healthy again",
            lambda: demo.health("gossamer-control") == "healthy",
            60,
        )
        time.sleep(5)
        demo.compose("stop", "catalog-2-proxy")
        time.sleep(8)
    # the load generator's next report (every 10 s) counts everything sent meanwhile
    reports = loadgen_reports(demo.logs("loadgen"))
    wait_for(
        "the load generator's next report",
        lambda: loadgen_reports(demo.logs("loadgen")) > reports,
        15,
    )
    end = loadgen_counts(demo.logs("loadgen"))
    assert end is not None
    sent, failed = end[0] - start[0], end[1] - start[1]
    print(
        f"faults: host sent={host.sent} failed={host.failed} {host.errors[:3]}; "
        f"loadgen sent={sent} failed={failed}"
    )
    assert host.sent >= 200 and sent >= 100
    assert host.failed == 0, host.errors[:5]
    assert failed == 0


def test_down_leaves_no_container_network_or_volume(demo: ComposeProject):
    demo.down_clean()
