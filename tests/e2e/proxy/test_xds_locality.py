"""Locality priorities on real sidecars: the control plane gives a caller's own zone
priority 0 in EDS, so a web sidecar in zone-a sends every request to catalog's zone-a
instance; when that instance drains away (SIGTERM: it reports `draining`, then leaves),
traffic fails over to zone-b's priority-1 instances without a failed request."""

from __future__ import annotations

import signal
import time
from collections import Counter

import pytest

from tests.helpers.procs import processes, wait_for
from tests.helpers.xds_mesh import XdsMesh, http_service

pytestmark = pytest.mark.e2e


def test_zone_priorities_keep_traffic_local_and_fail_over_without_errors(tmp_path) -> None:
    with processes() as procs:
        mesh = XdsMesh(tmp_path, procs, [http_service("web"), http_service("catalog")])
        mesh.start_control()
        near = mesh.sidecar("catalog", mesh.app("catalog-a"), extra=["--zone", "zone-a"])
        for name in ("catalog-b1", "catalog-b2"):
            mesh.sidecar("catalog", mesh.app(name), extra=["--zone", "zone-b"])
        web = mesh.sidecar("web", extra=["--zone", "zone-a"])

        def priorities() -> Counter[tuple[str, int]]:
            found = web.endpoints("outbound|8080||catalog")
            return Counter((e["zone"], e["priority"]) for e in found if e["health"] == "healthy")

        wait_for(
            lambda: priorities() == Counter({("zone-a", 0): 1, ("zone-b", 1): 2}),
            timeout=20,
            what="catalog's three instances at priorities 0 (zone-a) and 1 (zone-b)",
        )

        def call() -> tuple[int, str]:
            status, body = web.get("catalog:8080")
            return status, body.decode().strip()

        served = Counter(call() for _ in range(30))
        assert served == Counter({(200, "catalog-a"): 30}), served

        near.process.signal(signal.SIGTERM)  # drains: reports draining, then deregisters
        stopped_at = time.monotonic()
        outcomes: Counter[tuple[int, str]] = Counter()
        first_far = None
        deadline = stopped_at + 20
        while time.monotonic() < deadline:
            status, who = call()
            outcomes[(status, who)] += 1
            if first_far is None and who.startswith("catalog-b"):
                first_far = time.monotonic() - stopped_at
            if first_far is not None and sum(outcomes.values()) >= 200:
                break
        failed = {k: v for k, v in outcomes.items() if k[0] != 200}
        print(f"failover after {first_far}s; outcomes {dict(outcomes)}")
        assert first_far is not None, f"no request reached zone-b: {dict(outcomes)}"
        assert not failed, f"requests failed during the failover: {failed}"
        late = [call()[1] for _ in range(20)]
        assert set(late) <= {"catalog-b1", "catalog-b2"} and len(set(late)) == 2, late
