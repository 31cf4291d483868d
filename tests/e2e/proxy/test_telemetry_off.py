"""`GOSSAMER_TELEMETRY=off` and `gossamer proxy --no-telemetry` on real sidecars.

Three xDS-configured sidecars export to one real OTLP receiver, sampling every trace,
with access logs on: `web` (telemetry on, the control that shows the receiver, the
counters and the access log work), `shop` (`--no-telemetry`, the caller side) and
`catalog` (`GOSSAMER_TELEMETRY=off`, the called side, in front of the app). Both
callers' requests to catalog are served; only web's show in the receiver, in
`gossamer_requests_total` and in an access log. What the code promises
(proxy/sidecar.py `SidecarOptions.telemetry`): no per-request metrics, spans or
access logs; the sidecar's other metrics (connections, xDS) stay.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.helpers.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.helpers.procs import processes
from tests.helpers.xds_mesh import XdsMesh, http_service

pytestmark = pytest.mark.e2e

REQUESTS = 20


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_telemetry_off_serves_traffic_without_series_spans_or_access_logs(tmp_path):
    with OtlpReceiver() as receiver, processes() as procs:
        mesh = XdsMesh(
            tmp_path, procs, [http_service("web"), http_service("shop"), http_service("catalog")]
        )
        mesh.start_control()

        def env(name: str, **more: str) -> dict[str, str]:
            return {
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
                "OTEL_TRACES_SAMPLER": "always_on",
                "OTEL_BSP_SCHEDULE_DELAY": "100",
                "GOSSAMER_ACCESS_LOG": str(tmp_path / f"access-{name}.log"),
                **more,
            }

        catalog = mesh.sidecar(
            "catalog", mesh.app("catalog-0"), env=env("catalog", GOSSAMER_TELEMETRY="off")
        )
        shop = mesh.sidecar("shop", env=env("shop"), extra=["--no-telemetry"])
        web = mesh.sidecar("web", env=env("web"))

        for sidecar in (web, shop):
            for _ in range(REQUESTS):
                status, body = sidecar.get("catalog", "/")
                assert status == 200, body

        # the control: web's spans (client side only: catalog makes none) arrive ...
        def from_web(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
            return [s for s in spans if s.service == "web"]

        spans = receiver.wait_for(lambda s: len(from_web(s)) >= REQUESTS)
        assert {s.kind for s in from_web(spans)} == {"client"}
        assert web.metric("gossamer_requests_total", reporter="source") == REQUESTS
        assert web.metric("gossamer_trace_spans_exported_total") >= REQUESTS
        # ... and once web's last batch is in, the others had as long to export theirs
        time.sleep(1.0)
        spans = receiver.spans()
        assert [s for s in spans if s.service in ("shop", "catalog")] == []

        # no request series on the off sidecars, though they carried the traffic
        for off in (shop, catalog):
            assert off.metric("gossamer_requests_total") == 0, off.service
            assert off.metric("gossamer_request_duration_seconds_count") == 0, off.service
            assert off.metric("gossamer_route_requests_total") == 0, off.service
            assert off.metric("gossamer_trace_spans_exported_total") == 0, off.service
        # catalog's inbound did serve both callers: its connection counter says so
        assert catalog.metric("gossamer_downstream_connections_total", listener="inbound") >= 1
        assert catalog.metric("gossamer_xds_updates_total") >= 1

        # SIGTERM: each sidecar drains and closes its access log (flushing it)
        for sidecar in (web, shop, catalog):
            assert sidecar.process.stop() == 0, sidecar.process.output()

    # access logs: web's has its requests, the off sidecars wrote none
    assert lines(tmp_path / "access-web.log") == REQUESTS
    assert lines(tmp_path / "access-shop.log") == 0
    assert lines(tmp_path / "access-catalog.log") == 0
