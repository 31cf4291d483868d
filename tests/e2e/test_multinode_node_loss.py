"""Node loss (issue 18, Tests): a whole node taken off the network under load.

Three simulated nodes (tests/helpers/nodes.py, tests/helpers/multinode.py), one zone:

    node-1: web, its gateway      node-2: catalog-2, its gateway    node-3: catalog-3, its gateway

web's catalog endpoints are node-2's and node-3's gateways, both at priority 1 (same
zone, other node; priority 0 as web's node has none), so web's steady GETs go to both. Then node 3's only link goes down
(`ip link set ... down` on its bridge port: no FIN, no RST; its gateway, sidecar and
app keep running, unreachable), which is how a host that lost power or its network
looks to the others. Checked:

- zero failed requests at web's app: the tries that go to node 3 (pooled connections
  that no longer answer, connects that never complete) end at catalog's per-try
  timeout (connecting included: upstream/dispatch.py; so is the wait for a small body
  whose head arrived just before the link went down: routing/layers.py) and are
  retried on node 2;
  timed-out tries count for outlier detection, which ejects node 3's gateway endpoint,
  so later requests do not wait for a timeout;
- the control plane notices the node is gone: its gRPC keepalive finds node 3's
  registration streams dead, so node 3's gateway and catalog-3 leave the registry, and
  `/v1/gateways`, `gossamer status -o json` (the dashboard's data) and `/v1/endpoints`
  no longer list them, within NODE_GONE_WITHIN seconds of the link going down;
- web's EDS then no longer has a node-3 endpoint, and requests keep succeeding.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers.metrics_text import metric_sum
from tests.helpers.multinode import CATALOG, GW_PORT, World
from tests.helpers.nodes import SimNodes
from tests.helpers.procs import processes, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.root]

ONE_ZONE = {1: "zone-a", 2: "zone-a", 3: "zone-a"}
# what an operator sets for a service whose callers must not see a node loss: a bounded
# try, retried elsewhere on connect failures, resets, 5xx from a gateway and timeouts;
# endpoints that keep failing are ejected
POLICY: dict[str, Any] = {
    "retries": {
        "attempts": 2,
        "per_try_timeout": "1s",
        "on": ["connect-failure", "reset", "502", "503", "504"],
    },
    "outlier_detection": {
        "consecutive_gateway_errors": 2,
        "interval": "1s",
        "base_ejection_time": "30s",
    },
}
# the control plane pings every registration stream's connection every 10 s and gives
# up after 5 s more (control/server.py): a vanished node is gone from the registry
# within 15 s, plus the time for the change to be published and read back
NODE_GONE_WITHIN = 20.0


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("nodeloss")
    with SimNodes(3, open_ports=[GW_PORT]) as nodes, processes() as procs:
        w = World(tmp, procs, nodes, zones=ONE_ZONE, catalog_policy=POLICY)
        w.start_control()
        for node in (1, 2, 3):
            w.gateway(node)
        for node in (2, 3):
            w.sidecar(node, "catalog", f"catalog-{node}", w.app(node, f"catalog-{node}"))
        w.sidecar(1, "web", "web", None)
        yield w


def gateway_nodes(world: World) -> dict[str, str]:
    return {g["node"]: g["health"] for g in world.api("/v1/gateways")["gateways"]}


def status_gateway_nodes(world: World) -> set[str]:
    out = world.status("-o", "json")
    assert out.returncode == 0, out.stderr
    return {g["node"] for g in json.loads(out.stdout)["gateways"]}


def registered_catalogs(world: World) -> set[str]:
    found = world.api("/v1/endpoints?service=catalog")["endpoints"]
    return {e["instance_id"] for e in found}


def test_a_node_taken_off_the_network_under_load(world: World) -> None:
    web = world.sidecars["web"]
    gw = {n: f"{world.nodes.address(n)}:{GW_PORT}" for n in (2, 3)}

    def web_catalog() -> set[tuple[str, str, int]]:
        return {(e["node"], f"{e['address']}:{e['port']}", e["priority"])
                for e in world.endpoints(web, CATALOG)}  # fmt: skip

    expected = {("node-2", gw[2], 0), ("node-3", gw[3], 0)}  # no gaps: no local one
    try:
        wait_for(lambda: web_catalog() == expected, timeout=20,
                 what="web's catalog endpoints at node-2's and node-3's gateways")  # fmt: skip
    except TimeoutError:
        raise AssertionError(f"web's catalog endpoints: {web_catalog()} != {expected}") from None
    assert gateway_nodes(world) == {f"node-{n}": "healthy" for n in (1, 2, 3)}
    assert registered_catalogs(world) == {"catalog-2", "catalog-3"}
    # both nodes serve web before the loss (connections, not requests, are balanced)
    load = world.load(web)
    try:
        time.sleep(3.0)
    finally:
        before = load.stop()
    assert {k for k in before if k[0] != 200} == set(), before
    assert before[(200, "catalog-3")] > 0 and before[(200, "catalog-2")] > 0, before

    load = world.load(web)
    gone_after: dict[str, float] = {}
    try:
        time.sleep(1.0)
        down, down_at = time.monotonic(), time.time()
        world.nodes.link(3, up=False)

        def node_3_gone() -> bool:
            now = time.monotonic() - down
            if "gateways" not in gone_after and "node-3" not in gateway_nodes(world):
                gone_after["gateways"] = now
            if "endpoints" not in gone_after and registered_catalogs(world) == {"catalog-2"}:
                gone_after["endpoints"] = now
            if "status" not in gone_after and "node-3" not in status_gateway_nodes(world):
                gone_after["status"] = now
            if "eds" not in gone_after and not any(n == "node-3" for n, _, _ in web_catalog()):
                gone_after["eds"] = now
            return len(gone_after) == 4

        wait_for(node_3_gone, timeout=60, interval=0.25, what="node-3 gone from every view")
        time.sleep(2.0)  # requests after the control plane's change too
    finally:
        outcomes = load.stop()
        world.nodes.link(3, up=True)
    print(f"node-3 gone after (s): { {k: round(v, 1) for k, v in gone_after.items()} }")
    print(f"outcomes around the node loss: {dict(outcomes)}")
    slow = sorted(load.seconds)
    for (status, body), took, at in zip(load.outcomes, load.seconds, load.started, strict=True):
        if took > 0.5:
            print(
                f"slow: {status} {body[:60]!r} {took:.3f} s, from {at - down_at:+.2f} s after the link went down"
            )
    print(f"request seconds: median {slow[len(slow) // 2]:.3f}, max {slow[-1]:.3f}, "
          f"over 0.5 s: {sum(s > 0.5 for s in slow)}, over 2 s: {sum(s > 2 for s in slow)}")  # fmt: skip
    failed = {k: v for k, v in outcomes.items() if k[0] != 200}
    assert not failed, f"requests failed when node 3 vanished: {failed}"
    assert outcomes[(200, "catalog-2")] > 50, outcomes
    assert max(gone_after.values()) <= NODE_GONE_WITHIN, gone_after
    # the tries to node 3 ended at the per-try timeout (1 s), not at the cluster's 5 s
    # connect timeout, and node 3's gateway endpoint was ejected
    assert slow[-1] < 4.0, slow[-5:]
    metrics = world.http(1, f"http://127.0.0.1:{web.admin}/metrics")[1]
    ejected = metric_sum(metrics, "gossamer_outlier_ejections_total",
                         reason="consecutive_gateway_failure")  # fmt: skip
    assert ejected >= 1, ejected
    # the survivors still see node 1 and 2's gateways as healthy
    assert gateway_nodes(world) == {"node-1": "healthy", "node-2": "healthy"}
