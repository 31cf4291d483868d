"""`--zone` on xDS-configured sidecars, seen from the control plane and from callers.

tests/e2e/proxy/test_xds_locality.py covers one caller in zone-a and the failover when
the local instance drains away. This covers the rest of what README and
control/translate/endpoints.py promise: the registry (`/v1/endpoints`) records each
sidecar's zone; priorities are per caller (a zone-b caller gets zone-b at priority 0,
the mirror of a zone-a caller); a caller without a zone gets every zone at priority 0
and spreads over all; and when the local instance turns unhealthy (its app's readiness
probe fails) traffic fails over, then comes back to the local zone once it recovers.
"""

from __future__ import annotations

import functools
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers.operator_api import api_call
from tests.helpers.procs import http_get, processes, wait_for
from tests.helpers.xds_mesh import XdsMesh, XdsSidecar, http_service

pytestmark = pytest.mark.e2e

CATALOG = "outbound|8080||catalog"


def served(caller: XdsSidecar, count: int) -> Counter[str]:
    """Which catalog app answered each of `count` requests (bodies are app names)."""
    seen: Counter[str] = Counter()
    for _ in range(count):
        status, body = caller.get("catalog")
        assert status == 200, body
        seen[body.decode().strip()] += 1
    return seen


def priorities(caller: XdsSidecar) -> dict[str, int]:
    """Zone -> EDS priority in this caller's view of catalog (healthy endpoints)."""
    return {e["zone"]: e["priority"] for e in caller.endpoints(CATALOG) if e["health"] == "healthy"}


def has_priorities(caller: XdsSidecar, want: dict[str, int]) -> bool:
    return priorities(caller) == want


def test_zone_reaches_the_registry_and_priorities_follow_each_caller(tmp_path: Path):
    with processes() as procs:
        mesh = XdsMesh(tmp_path, procs, [http_service("web"), http_service("catalog")])
        mesh.start_control()
        app_a = mesh.app("catalog-a")
        near = mesh.sidecar(
            "catalog", app_a, extra=["--zone", "zone-a", "--probe-path", "/healthz"]
        )
        far = mesh.sidecar("catalog", mesh.app("catalog-b"), extra=["--zone", "zone-b"])
        web_a = mesh.sidecar("web", extra=["--zone", "zone-a"])
        web_b = mesh.sidecar("web", extra=["--zone", "zone-b"])
        web_none = mesh.sidecar("web")

        # the control plane saw each sidecar's zone (none: the empty zone)
        token = (tmp_path / "data" / "admin-token").read_text().strip()
        status, body = api_call(mesh.ports["api"], "/v1/endpoints", token)
        assert status == 200, body
        zones = {e["instance_id"]: e["zone"] for e in body["endpoints"]}
        assert zones[near.instance] == "zone-a" and zones[far.instance] == "zone-b"
        assert zones[web_a.instance] == "zone-a" and zones[web_b.instance] == "zone-b"
        assert zones[web_none.instance] in ("", None)

        # each caller's EDS puts its own zone first; no zone: all at priority 0
        for caller, want in (
            (web_a, {"zone-a": 0, "zone-b": 1}),
            (web_b, {"zone-a": 1, "zone-b": 0}),
            (web_none, {"zone-a": 0, "zone-b": 0}),
        ):
            wait_for(
                functools.partial(has_priorities, caller, want),
                timeout=30,
                what=f"{caller.instance}'s priorities {want}",
            )
        assert served(web_a, 30) == Counter({"catalog-a": 30})
        assert served(web_b, 30) == Counter({"catalog-b": 30})
        spread = served(web_none, 40)
        assert set(spread) == {"catalog-a", "catalog-b"}, spread

        # the local instance turns unhealthy: zone-a's caller fails over to zone-b ...
        assert http_get(f"http://127.0.0.1:{app_a}/control/health/fail")[0] == 200
        # (zone-a keeps priority 0 with its only endpoint unhealthy: priority 1 takes over)
        wait_for(lambda: priorities(web_a) == {"zone-b": 1}, timeout=30, what="zone-a out")
        assert served(web_a, 20) == Counter({"catalog-b": 20})
        # ... and comes back to its own zone once the instance recovers
        assert http_get(f"http://127.0.0.1:{app_a}/control/health/ok")[0] == 200
        wait_for(
            lambda: priorities(web_a) == {"zone-a": 0, "zone-b": 1}, timeout=30, what="zone-a back"
        )
        assert served(web_a, 20) == Counter({"catalog-a": 20})
