"""What a sidecar and the control plane expose beyond their host (issue 17, findings 12
and 10), over real processes and sockets.

A real `gossamer control` and a sidecar bootstrapped with a join token: the sidecar's
admin port (`/config_dump`: policies, endpoints) listens on 127.0.0.1 only, so a
connection to the host's other address is refused; its metrics port listens on every
interface and answers `GET /metrics` and nothing else; the sidecar registers that port,
and `/v1/http_sd` publishes it to callers with a viewer API token only (401, audited,
without one) unless mesh.yaml says `observability.http_sd: open`.
"""

from __future__ import annotations

import json
import socket
import subprocess
from typing import Any

import pytest

from tests.helpers.operator_api import api_call
from tests.helpers.procs import http_get, processes
from tests.helpers.xds_mesh import XdsMesh, XdsSidecar, http_service

pytestmark = pytest.mark.e2e


def _listening(port: int) -> list[str]:
    """The local addresses of the TCP sockets listening on `port` (from `ss`)."""
    out = subprocess.run(
        ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    return [line.split()[3] for line in out.splitlines() if line.strip()]


def _other_address() -> str:
    """An IPv4 address of this host other than 127.0.0.1: a global one when the host has
    one, else 127.0.0.2 (also this host, and a socket bound to 0.0.0.0 answers there)."""
    out = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True
    ).stdout
    for line in out.splitlines():
        parts = line.split()
        if "inet" in parts:
            return parts[parts.index("inet") + 1].split("/")[0]
    return "127.0.0.2"


def _web(mesh: XdsMesh) -> XdsSidecar:
    mesh.start_control()
    return mesh.sidecar("web", mesh.app("web"))  # --admin-address left at its default


def test_admin_is_loopback_only_and_the_metrics_port_serves_metrics_only(tmp_path):
    with processes() as procs:
        web = _web(XdsMesh(tmp_path, procs, [http_service("web")]))
        assert _listening(web.admin) == [f"127.0.0.1:{web.admin}"]
        assert _listening(web.metrics) in ([f"0.0.0.0:{web.metrics}"], [f"*:{web.metrics}"])
        host = _other_address()  # not 127.0.0.1: admin refuses, metrics answers
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((host, web.admin), timeout=5).close()
        status, body = http_get(f"http://{host}:{web.metrics}/metrics")
        assert status == 200 and b"gossamer_xds_" in body
        for path in ("/config_dump", "/clusters", "/ready", "/live", "/"):
            status, body = http_get(f"http://{host}:{web.metrics}{path}")
            assert status == 404 and b"/metrics only" in body, path
        # the admin port keeps everything, for whoever is inside the namespace
        assert web.admin_get("/config_dump")[0] == 200
        assert web.admin_get("/metrics")[1].count(b"\n") > 10


def test_http_sd_publishes_metrics_ports_to_viewers_only(tmp_path):
    with processes() as procs:
        mesh = XdsMesh(tmp_path, procs, [http_service("web")])
        web = _web(mesh)
        admin = (tmp_path / "data" / "admin-token").read_text().strip()
        api = mesh.ports["api"]
        status, body = api_call(api, "/v1/http_sd", None)
        assert status == 401 and "API token is required" in body["error"]
        assert api_call(api, "/v1/http_sd", "gsa1_wrong")[0] == 401
        status, made = api_call(
            api, "/v1/api-tokens", admin, "POST", {"name": "prom", "role": "viewer"}
        )
        assert status == 201
        status, answer = api_call(api, "/v1/http_sd", made["token"])
        groups: Any = answer  # a list of target groups
        assert status == 200
        assert [g["targets"] for g in groups] == [[f"127.0.0.1:{web.metrics}"]]
        assert groups[0]["labels"]["gossamer_instance"] == web.instance
        # the registry keeps the admin port to show; nothing publishes it for scraping
        _, endpoints = api_call(api, "/v1/endpoints?service=web", admin)
        (endpoint,) = endpoints["endpoints"]
        assert (endpoint["admin_port"], endpoint["metrics_port"]) == (web.admin, web.metrics)
        _, audit = api_call(api, "/v1/audit?limit=50", admin)
        refused = [e for e in audit["entries"] if e["action"] == "GET /v1/http_sd"]
        assert [(e["outcome"], e["status"]) for e in refused] == [("unauthenticated", 401)] * 2


def test_http_sd_open_when_mesh_yaml_says_so(tmp_path):
    with processes() as procs:
        mesh = XdsMesh(tmp_path, procs, [http_service("web")])
        mesh.observability = {"http_sd": "open"}
        mesh.set_services(mesh.services)
        web = _web(mesh)
        status, groups = api_call(mesh.ports["api"], "/v1/http_sd", None)
        assert status == 200, groups
        assert json.dumps(groups).count(f"127.0.0.1:{web.metrics}") == 1
        log = mesh.control.output() if mesh.control is not None else ""
        assert "observability.http_sd is open" in log


def test_http_sd_accepts_the_token_in_prometheus_token_file(tmp_path):
    """mesh.yaml's observability.prometheus_token_file: its content is a viewer token,
    re-read when the file is replaced (as gossamer inject's bootstrap hands it out)."""
    token_file = tmp_path / "prometheus.token"
    first, second = "gsa1_" + "f" * 40, "gsa1_" + "s" * 43
    token_file.write_text(first + "\n")
    with processes() as procs:
        mesh = XdsMesh(tmp_path, procs, [http_service("web")])
        mesh.observability = {"prometheus_token_file": "prometheus.token"}  # beside mesh.yaml
        mesh.set_services(mesh.services)
        web = _web(mesh)
        api = mesh.ports["api"]
        status, answer = api_call(api, "/v1/http_sd", first)
        assert status == 200 and json.dumps(answer).count(f"127.0.0.1:{web.metrics}") == 1
        assert api_call(api, "/v1/services", first)[0] == 200  # a viewer's reads
        assert api_call(api, "/v1/tokens", first)[0] == 403  # and nothing more
        replacement = tmp_path / "prometheus.token.new"
        replacement.write_text(second + "\n")
        replacement.replace(token_file)
        assert api_call(api, "/v1/http_sd", first)[0] == 401
        assert api_call(api, "/v1/http_sd", second)[0] == 200
