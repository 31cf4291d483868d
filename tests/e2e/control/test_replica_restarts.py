"""Control-plane replicas on etcd stopping and starting (real etcd, real `gossamer
control` replicas, real sidecars):

- a replica stopped with SIGTERM leaves its sidecars' registrations to their leases: the
  sidecars move to the other replica and take their instances over, and the endpoint
  key in etcd is never deleted in between (its create revision stays the same);
- a replica that starts while another runs, or on a new mesh, serves at once; one that
  starts after every replica has been gone for a lease TTL holds configuration, and so
  does a second one back from the same outage (until the first one's deadline), so
  reconnecting sidecars register again before any of them is served a registry without
  the others (control/replica_presence.py).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.helpers.etcd import EtcdCluster
from tests.helpers.procs import processes, wait_for
from tests.helpers.replicas import ReplicatedMesh, control_plane

pytestmark = pytest.mark.e2e
HOLDING = "waiting for sidecars to register again"


def etcd_kvs(etcd: EtcdCluster, key_prefix: str) -> list[dict[str, object]]:
    """etcd's own view of the keys under `key_prefix` (etcdctl's JSON: keys in base64,
    create revision, lease)."""
    done = subprocess.run(
        ["etcdctl", f"--endpoints={','.join(etcd.endpoints)}", "get", "--prefix", key_prefix,
         "-w", "json"],
        capture_output=True, text=True, timeout=10, check=True,
    )  # fmt: skip
    return list(json.loads(done.stdout).get("kvs", []))


def endpoint_keys(etcd: EtcdCluster, prefix: str, service: str) -> dict[str, dict[str, int]]:
    """A service's endpoint keys: create revision and lease each."""
    return {
        str(kv["key"]): {"create": int(str(kv["create_revision"])),
                         "lease": int(str(kv.get("lease", 0)))}
        for kv in etcd_kvs(etcd, f"{prefix}/endpoints/default/{service}/")
    }  # fmt: skip


def log_of(mesh: ReplicatedMesh, name: str) -> str:
    replica = mesh.replicas[name]
    return "".join(p.read_text(errors="replace") for p in sorted(replica.dir.glob("control-*.log")))


def test_a_stopped_replicas_sidecars_keep_their_endpoints(tmp_path: Path, etcd_server) -> None:
    prefix = "/stopping"
    with processes() as procs:
        mesh = ReplicatedMesh(tmp_path, procs, etcd_server.store_url(prefix), ["a", "b"])
        try:
            mesh.start("a")
            mesh.start("b")
            catalog = mesh.sidecar("catalog", mesh.app("catalog-1"), order=["a", "b"])
            wait_for(lambda: control_plane(catalog)["registered_at"] == mesh.replicas["a"].xds,
                     what="catalog registered on a")  # fmt: skip
            wait_for(lambda: len(endpoint_keys(etcd_server, prefix, "catalog")) == 1,
                     what="catalog's endpoint in etcd")  # fmt: skip
            [(key, before)] = endpoint_keys(etcd_server, prefix, "catalog").items()

            mesh.stop("a")  # SIGTERM: a graceful stop
            wait_for(lambda: control_plane(catalog)["registered_at"] == mesh.replicas["b"].xds,
                     timeout=10, what="catalog registered on b")  # fmt: skip
            after = endpoint_keys(etcd_server, prefix, "catalog")
            assert list(after) == [key]
            # taken over by a new lease in place: never deleted, so never missing
            assert after[key]["create"] == before["create"]
            assert after[key]["lease"] != before["lease"]
        finally:
            mesh.close()


def live_replicas(etcd: EtcdCluster, prefix: str) -> int:
    return len(etcd_kvs(etcd, f"{prefix}.replicas/live/"))


def test_a_replica_back_after_every_replica_was_gone_holds(tmp_path: Path, etcd_server) -> None:
    prefix = "/outage"
    with processes() as procs:
        # a lease TTL long enough that "within the TTL" survives a slow start-up
        mesh = ReplicatedMesh(
            tmp_path, procs, etcd_server.store_url(prefix), ["a", "b", "c"], lease_ttl="10s"
        )
        try:
            mesh.start("a")  # a new mesh: nothing to wait for
            mesh.start("b")  # another replica runs: its sidecars' leases are alive
            assert HOLDING not in log_of(mesh, "a") and HOLDING not in log_of(mesh, "b")
            mesh.sidecar("catalog", mesh.app("catalog-1"))
            mesh.kill("a")
            mesh.kill("b")  # every replica gone, as in a power cut
            assert live_replicas(etcd_server, prefix) == 2  # their keys outlive them
            mesh.start("c")  # within the lease TTL: registrations are intact
            assert live_replicas(etcd_server, prefix) == 3
            assert HOLDING not in log_of(mesh, "c")
            mesh.kill("c")
            wait_for(lambda: live_replicas(etcd_server, prefix) == 0, timeout=20,
                     interval=0.2, what="every replica's key to expire")  # fmt: skip
            mesh.start("a")
            assert HOLDING in log_of(mesh, "a")
            mesh.start("b")  # back from the same outage: holds until a's deadline
            assert HOLDING in log_of(mesh, "b")
        finally:
            mesh.close()
