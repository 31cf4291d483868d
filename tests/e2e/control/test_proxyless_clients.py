"""Three independent proxyless xDS clients against `gossamer control`: grpcio (C-core),
gRPC-Go v1.85.0 and gRPC-Java 1.85.1, each in gRPC's own interop scenarios.

The control plane runs as a real subprocess with a CA (so sidecars' clusters would carry
mutual-TLS transport matches) and an insecure xDS port; each client, in zone-a, calls
service `echo` (mesh.yaml static endpoints: real gRPC servers, the gRPC-Go test server
for every client: it stops gracefully, GOAWAY first) every 10 ms while mesh.yaml
changes under it:

- ping_pong: one endpoint answers every call;
- round_robin: three endpoints share the calls evenly;
- backends_changed: the endpoint set is replaced; calls move to the new set;
- remove_instance_group: one of two groups of endpoints is removed; the rest serve;
- secondary_locality_gets_requests_on_primary_failure: zone-a (priority 0 for a zone-a
  client) takes every call while zone-b waits; when zone-a's server stops, zone-b takes
  over.

Every scenario must run without a failed call, and no client may NACK anything: the
control plane logs every NACK ("xds update rejected"), and the Go and Java clients' own
CSDS must show every resource ACKED. Each scenario prints its calls sent and failed.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from gossamer.contract.vocabulary import LbPolicy
from tests.helpers.control_plane import control_plane_process, mesh, write_mesh
from tests.helpers.xds_clients import KINDS, GoEchoServer, XdsClient, wait_for, write_bootstrap

pytestmark = pytest.mark.e2e
TARGET = "xds:///echo:50051"


def echo_mesh(*members: tuple[Any, str]) -> dict[str, object]:
    endpoints = [
        {"address": "127.0.0.1", "port": s.port, "instance_id": s.name, "zone": zone}
        for s, zone in members
    ]
    service = {"name": "echo", "ports": [{"port": 50051, "protocol": "grpc"}]}
    return mesh([{**service, "endpoints": endpoints}])


class Scenarios:
    def __init__(self, kind: str, client: XdsClient) -> None:
        self.kind = kind
        self.client = client
        self.report: dict[str, dict[str, Any]] = {}

    def window(self, start: float, end: float) -> tuple[int, list[str], Counter[str]]:
        calls = [c for c in self.client.calls() if start <= c.t < end]
        errors = [c.error for c in calls if c.error]
        return len(calls), errors, Counter(c.server for c in calls if c.server)

    def served_since(self, start: float) -> set[str]:
        return {c.server for c in self.client.calls() if c.t >= start and c.server}

    def record(self, name: str, start: float, end: float, **extra: Any) -> Counter[str]:
        sent, errors, servers = self.window(start, end)
        self.report[name] = {"sent": sent, "failed": len(errors), **extra}
        print(f"{self.kind} {name}: sent {sent}, failed {len(errors)}, by server "
              f"{dict(sorted(servers.items()))} {extra}")  # fmt: skip
        assert sent >= 20, f"{name}: the client made only {sent} calls"
        assert not errors, f"{name}: {len(errors)} failed calls, e.g. {errors[:3]}"
        return servers


def run_scenarios(kind: str, tmp_path, make_server) -> Scenarios:
    a1, a2, a3, c1, c2, b1 = (make_server(n) for n in ("a1", "a2", "a3", "c1", "c2", "b1"))
    servers = [a1, a2, a3, c1, c2, b1]
    client = None
    try:
        with control_plane_process(tmp_path, echo_mesh((a1, "zone-a"))) as (plane, target, config):
            node_id = f"interop-{kind}"
            bootstrap = write_bootstrap(tmp_path / "bootstrap.json", target, node_id, "zone-a")
            client = XdsClient(kind, TARGET, bootstrap, tmp_path / f"{kind}.out")
            run = Scenarios(kind, client)
            start = time.time()

            def first_answer() -> bool:
                nacks = [line for line in plane.log().splitlines() if "xds update rejected" in line]
                assert not nacks, f"{kind} NACKed: {nacks[:3]}"
                return "a1" in run.served_since(start)

            wait_for(first_answer, 90, f"{kind}: a first answer")

            # ping_pong
            t0 = time.time()
            time.sleep(1.0)
            assert set(run.record("ping_pong", t0, time.time())) == {"a1"}

            # round_robin
            write_mesh(config, echo_mesh((a1, "zone-a"), (a2, "zone-a"), (a3, "zone-a")))
            changed = time.time()
            wait_for(lambda: run.served_since(changed) >= {"a1", "a2", "a3"}, 30, "a1..a3")
            t0 = time.time()
            time.sleep(2.0)
            spread = run.record("round_robin", t0, time.time())
            total = sum(spread.values())
            assert set(spread) == {"a1", "a2", "a3"}
            assert min(spread.values()) >= 0.2 * total, f"uneven spread {spread}"

            # backends_changed
            t0 = time.time()
            write_mesh(config, echo_mesh((c1, "zone-a"), (c2, "zone-a")))
            wait_for(lambda: run.served_since(t0) >= {"c1", "c2"}, 30, "c1 and c2")
            moved = min(c.t for c in client.calls() if c.t >= t0 and c.server in ("c1", "c2"))
            time.sleep(1.0)
            late = [c.t for c in client.calls() if c.t >= moved + 1.0 and c.server in ("a1", "a2")]
            assert not late, "calls still reach the replaced endpoints"
            run.record("backends_changed", t0, time.time(), switch_s=round(moved - t0, 3))

            # remove_instance_group
            groups = ((a1, "zone-a"), (a2, "zone-a"), (c1, "zone-a"), (c2, "zone-a"))
            write_mesh(config, echo_mesh(*groups))
            changed = time.time()
            wait_for(lambda: run.served_since(changed) >= {"a1", "a2", "c1", "c2"}, 30, "both")
            t0 = time.time()
            write_mesh(config, echo_mesh((c1, "zone-a"), (c2, "zone-a")))
            time.sleep(2.0)
            after = run.window(t0 + 1.0, time.time())[2]
            assert set(after) == {"c1", "c2"}, f"after the removal: {after}"
            run.record("remove_instance_group", t0, time.time())

            # secondary_locality_gets_requests_on_primary_failure
            write_mesh(config, echo_mesh((a1, "zone-a"), (b1, "zone-b")))
            changed = time.time()
            wait_for(lambda: "a1" in run.window(changed + 1.0, time.time())[2], 30, "a1 only")
            time.sleep(1.0)
            t0 = time.time()
            time.sleep(1.0)
            primary = run.window(t0, time.time())[2]
            assert set(primary) == {"a1"}, f"priority 0 (zone-a) should take all: {primary}"
            failed_at = time.time()
            a1.stop()
            wait_for(lambda: "b1" in run.served_since(failed_at), 30, "zone-b after zone-a")
            first_b = min(c.t for c in client.calls() if c.t >= failed_at and c.server == "b1")
            time.sleep(1.0)
            run.record(
                "secondary_locality_gets_requests_on_primary_failure",
                t0,
                time.time(),
                failover_s=round(first_b - failed_at, 3),
            )

            # no NACK anywhere: the control plane's log, and the clients' own CSDS
            if client.csds_port:
                status = client.resource_status()
                kinds = {type_url.rsplit(".", 1)[-1] for type_url, _ in status}
                assert {"Listener", "Cluster", "ClusterLoadAssignment"} <= kinds, status
                refused = {k: v for k, v in status.items() if v != "ACKED"}
                assert not refused, f"{kind} CSDS: {refused}"
            client.stop()
        log = plane.log()
        assert node_id in log, "the client never reached the control plane"
        nacks = [line for line in log.splitlines() if "xds update rejected" in line]
        assert not nacks, f"{kind} NACKed: {nacks[:3]}"
        return run
    finally:
        if client is not None:
            client.stop()
        for server in servers:
            server.stop()


@pytest.mark.parametrize("kind", KINDS)
def test_proxyless_client_interop(kind, tmp_path):
    try:
        run_scenarios(kind, tmp_path, GoEchoServer)
    except AssertionError:
        out = tmp_path / f"{kind}.log"
        print(out.read_text(errors="replace")[-4000:] if out.exists() else "(no client log)")
        raise


FULL_POLICY: dict[str, Any] = {
    "timeout": "3s",
    "retries": {"attempts": 2, "per_try_timeout": "1s", "on": ["unavailable", "reset", 503]},
    "outlier_detection": {
        "consecutive_5xx": 3,
        "consecutive_gateway_errors": 2,
        "interval": "2s",
        "success_rate": {"minimum_hosts": 2, "request_volume": 10},
    },
    "circuit_breakers": {"max_connections": 100, "max_requests": 200, "max_retries": 5},
    "health_check": {"tcp": True, "interval": "2s"},
}


@pytest.mark.parametrize("kind", KINDS)
def test_every_policy_is_accepted_by_proxyless_clients(kind, tmp_path):
    """Every load-balancing policy, with retries, timeout, outlier detection, circuit
    breakers and health checks on: each client ACKs what it receives (control plane log,
    CSDS) and its calls succeed."""
    servers = [GoEchoServer(n) for n in ("p1", "p2")]
    try:
        services = []
        for policy in LbPolicy:
            extra = {"hash_header": "x-user"} if policy is LbPolicy.RING_HASH else {}
            endpoints = [{"address": "127.0.0.1", "port": s.port, "instance_id": s.name}
                         for s in servers]  # fmt: skip
            services.append(
                {
                    "name": f"echo-{policy.value.replace('_', '-')}",
                    "ports": [{"port": 50051, "protocol": "grpc"}],
                    "lb_policy": policy.value,
                    **extra,
                    **FULL_POLICY,
                    "endpoints": endpoints,
                }
            )
        with control_plane_process(tmp_path, mesh(services)) as (plane, target, _):
            for service in services:
                name = service["name"]
                node_id = f"policy-{kind}-{name}"
                bootstrap = write_bootstrap(tmp_path / f"{name}.json", target, node_id, "")
                client = XdsClient(kind, f"xds:///{name}:50051", bootstrap, tmp_path / name)
                try:
                    start = time.time()
                    wait_for(
                        lambda c=client, s=start: (
                            len([x for x in c.calls() if x.t >= s and x.server]) >= 10
                            or any(x.error for x in c.calls())
                        ),
                        60,
                        f"{kind}: answers from {name}",
                    )
                    errors = [c.error for c in client.calls() if c.error]
                    assert not errors, f"{kind} {name}: {errors[:3]}\n{client.log()}"
                    if client.csds_port:
                        status = client.resource_status()
                        refused = {k: v for k, v in status.items() if v != "ACKED"}
                        assert status and not refused, f"{kind} {name} CSDS: {refused or status}"
                finally:
                    client.stop()
            nacks = [line for line in plane.log().splitlines() if "xds update rejected" in line]
            assert not nacks, f"{kind} NACKed: {nacks[:3]}"
    finally:
        for server in servers:
            server.stop()
