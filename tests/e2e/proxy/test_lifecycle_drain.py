"""SIGTERM to a sidecar under load: its endpoint leaves the peers' rotation before it
stops listening, no request in flight is cut, and keep-alive clients are told to go."""

from __future__ import annotations

import http.client
import signal
import threading
import time
from typing import Any

import pytest

from tests.helpers.load import Load
from tests.helpers.procs import port_open, processes, wait_for
from tests.helpers.xds_mesh import XdsMesh, XdsSidecar, http_service, spiffe

pytestmark = pytest.mark.e2e

# no retries: a request the draining sidecar cut would show up as a failure
SERVICES = [
    http_service("web"),
    http_service("catalog", authorization={"allow": [spiffe("web"), spiffe("catalog")]}),
]
CATALOG = "outbound|8080||catalog"
SLOW = "/slow/400"  # every request is in flight for 400 ms


def _at_web(web: XdsSidecar, port: int) -> dict[str, Any] | None:
    found = [e for e in web.endpoints(CATALOG) if e["port"] == port]
    return found[0] if found else None


class _Watch(threading.Thread):
    """Records when `condition` first held (monotonic clock), polling every `interval`."""

    def __init__(self, condition: Any, interval: float) -> None:
        super().__init__(daemon=True)
        self.condition = condition
        self.interval = interval
        self.at: float | None = None
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            try:
                if self.condition():
                    self.at = time.monotonic()
                    return
            except Exception:
                pass
            time.sleep(self.interval)

    def finish(self, timeout: float) -> float | None:
        self.join(timeout)
        self._done.set()
        return self.at


def test_sigterm_under_load_drains_without_cutting_a_request(tmp_path):
    with processes() as procs:
        mesh = XdsMesh(tmp_path, procs, SERVICES)
        mesh.start_control()
        # drain-notice 1 s: how long peers get to take the endpoint out of rotation
        # before the listeners close; drain-timeout 5 s: in-flight requests' deadline
        timing = ["--drain-notice", "1", "--drain-timeout", "5"]
        leaving = mesh.sidecar("catalog", mesh.app("catalog-0"), extra=timing)
        staying = mesh.sidecar("catalog", mesh.app("catalog-1"))
        web = mesh.sidecar("web")
        wait_for(lambda: len(web.endpoints(CATALOG)) == 2, what="web to know both catalogs")

        load = Load(web.outbound, "catalog", SLOW, threads=8).start()
        # keep-alive clients of the leaving sidecar's own outbound port, mid-request when
        # the signal arrives: one answered during the notice, one after the listeners closed
        clients = [
            http.client.HTTPConnection("127.0.0.1", leaving.outbound, timeout=10) for _ in range(2)
        ]
        for client in clients:
            client.request("GET", "/", headers={"Host": "catalog"})
            first = client.getresponse()
            assert first.status == 200 and first.getheader("connection") is None
            first.read()
        wait_for(lambda: load.result.total >= 40, timeout=30, what="load to flow")
        # requests must be in flight through the leaving instance at the signal
        wait_for(
            lambda: (_at_web(web, leaving.inbound) or {}).get("active_requests", 0) > 0,
            timeout=10,
            interval=0.01,
            what="requests in flight to the leaving instance",
        )
        served_before = (_at_web(web, leaving.inbound) or {})["total_requests"]
        for client, ms in zip(clients, (600, 4000), strict=True):
            client.request("GET", f"/slow/{ms}", headers={"Host": "catalog"})
        time.sleep(0.1)  # let those requests reach the sidecar (a head start, not a wait)

        out_of_rotation = _Watch(
            lambda: (e := _at_web(web, leaving.inbound)) is None or not e["eligible"], 0.02
        )
        closed = _Watch(lambda: not port_open(leaving.inbound), 0.02)
        signalled = time.monotonic()
        leaving.process.signal(signal.SIGTERM)
        out_of_rotation.start()
        closed.start()
        assert not leaving.ready()  # /ready fails at once

        # the requests in flight at the signal finish, and say the connection ends
        answered = []
        for client in clients:
            second = client.getresponse()
            answered.append(time.monotonic())
            assert second.status == 200, second.read()
            assert second.getheader("connection") == "close"
            assert b"slow" in second.read()
            client.close()

        left_at = out_of_rotation.finish(10)
        closed_at = closed.finish(10)
        assert left_at is not None, "the draining endpoint stayed in web's rotation"
        assert closed_at is not None, "the draining sidecar kept listening"
        assert signalled <= left_at < closed_at, (left_at - signalled, closed_at - signalled)
        # during the notice (still listening), and after the listeners closed
        assert answered[0] < closed_at < answered[1]
        assert leaving.process.proc.wait(15) == 0  # a clean exit within the drain deadline
        wait_for(
            lambda: _at_web(web, leaving.inbound) is None,
            timeout=10,
            what="the endpoint to be deregistered",
        )
        after = load.result.total
        wait_for(lambda: load.result.total >= after + 40, timeout=30, what="load after")
        result = load.stop()

        assert result.errors == [], result.errors[:3]
        assert set(result.statuses) == {200}, result.statuses
        assert result.total > 100
        log = leaving.process.output()
        assert "connections aborted" not in log
        # web counted every one of them as a 200 too
        assert web.metric("gossamer_requests_total", reporter="source", response_code="200") >= (
            result.total
        )
        assert staying.ready()
        assert served_before > 0
        timeline = {
            "out_of_rotation_s": round(left_at - signalled, 3),
            "stopped_listening_s": round(closed_at - signalled, 3),
            "requests": result.total,
        }
        print("drain timeline", timeline)


def test_drain_timeout_bounds_the_shutdown(tmp_path):
    """A request that outlives `--drain-timeout` is cut at the deadline, and the
    sidecar exits then instead of waiting for it."""
    with processes() as procs:
        mesh = XdsMesh(tmp_path, procs, SERVICES)
        mesh.start_control()
        timing = ["--drain-notice", "0.2", "--drain-timeout", "1"]
        catalog = mesh.sidecar("catalog", mesh.app("catalog-0"), extra=timing)
        client = http.client.HTTPConnection("127.0.0.1", catalog.outbound, timeout=15)
        client.request("GET", "/slow/8000", headers={"Host": "catalog"})
        wait_for(
            lambda: catalog.metric("gossamer_upstream_connections") >= 1,
            timeout=10,
            interval=0.02,
            what="the slow request to reach the app",
        )
        signalled = time.monotonic()
        catalog.process.signal(signal.SIGTERM)
        with pytest.raises((OSError, http.client.HTTPException)):
            client.getresponse().read()  # cut: the connection is aborted at the deadline
        cut = time.monotonic() - signalled
        assert catalog.process.proc.wait(10) == 0
        exited = time.monotonic() - signalled
        # notice (0.2 s) + the draining acknowledgement + the 1 s deadline, not 8 s
        assert 1.0 <= cut < 5.0, cut
        assert exited < 6.0, exited
        assert "connections aborted at shutdown" in catalog.process.output()
