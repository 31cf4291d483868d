"""`GET /v1/config` of a real `gossamer control`: what it promises, to whom.

The route is the control plane's configuration state (control/server.py `status`):
mesh.yaml's path and trust domain, how many loads succeeded and the last rejection,
the bound ports, the publisher's figures and each group's snapshot versions. It needs
a viewer token (401 without one, or with a wrong one, and the refusal is audited), and
it carries no secret: no API token, no join token, no key material. A mesh.yaml
refused on reload shows in it (README: "shown by `/v1/config`") and a fixed one clears it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.control_plane import control_plane_process, web_mesh, write_mesh
from tests.helpers.operator_api import api_call
from tests.helpers.procs import free_port

pytestmark = pytest.mark.e2e


def wait_config(
    port: int, token: str, done: Callable[[dict[str, Any]], bool], timeout: float = 30.0
) -> dict[str, Any]:
    """/v1/config once `done` holds for it; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = api_call(port, "/v1/config", token)
        assert status == 200, body
        if done(body):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"/v1/config never matched within {timeout}s: {body}")
        time.sleep(0.1)


def test_config_needs_a_viewer_token_shows_the_state_and_no_secret(tmp_path: Path):
    api_port, xds_port, boot_port = free_port(), free_port(), free_port()
    data = web_mesh(tmp_path, xds_port=xds_port, bootstrap_port=boot_port, api_port=api_port)
    with control_plane_process(tmp_path, data) as (_process, target, config):
        admin = (tmp_path / "data" / "admin-token").read_text().strip()
        status, made = api_call(
            api_port, "/v1/api-tokens", admin, "POST", {"name": "watcher", "role": "viewer"}
        )
        assert status == 201, made
        viewer = made["token"]
        status, join = api_call(api_port, "/v1/tokens", admin, "POST", {"service": "web"})
        assert status == 201, join

        # no token, a wrong one: 401, nothing of the body; the refusals are audited
        status, body = api_call(api_port, "/v1/config", None)
        assert status == 401 and set(body) == {"error"}, body
        status, body = api_call(api_port, "/v1/config", viewer + "x")
        assert status == 401 and set(body) == {"error"}, body
        status, audit = api_call(api_port, "/v1/audit?limit=100", admin)
        assert status == 200, audit
        refused = [e for e in audit["entries"] if e.get("status") == 401]
        assert len(refused) >= 2, audit["entries"]

        # a viewer gets the state of this very process
        status, info = api_call(api_port, "/v1/config", viewer)
        assert status == 200, info
        assert info["config"]["path"] == str(config)
        assert info["config"]["trust_domain"] == "gossamer.local"
        assert info["config"]["loads"] >= 1 and info["config"]["last_error"] is None
        ports = info["ports"]
        assert (ports["api"], ports["xds"], ports["bootstrap"]) == (api_port, xds_port, boot_port)
        assert info["publisher"]["publishes"] >= 1 and info["publisher"]["failures"] == 0
        web = info["snapshots"]["sidecar:default/web"]
        assert {"CDS", "EDS", "LDS", "RDS", "SDS"} <= set(web)
        assert all(v["version"] for v in web.values())

        # no secret in it: neither API token, nor the join token, nor a PEM
        text = json.dumps(info)
        for secret in (admin, viewer, join["token"]):
            assert secret not in text
        assert "PRIVATE KEY" not in text and "BEGIN CERTIFICATE" not in text

        # a mesh.yaml refused on reload shows, with where; the fix clears it
        loads = info["config"]["loads"]
        bad = dict(data, services=[*data["services"], {"name": "BAD"}])
        bad["control"] = dict(data["control"], insecure_xds_listen=target)
        write_mesh(config, bad)
        refused_info = wait_config(api_port, viewer, lambda b: b["config"]["last_error"])
        assert "services[1].name" in refused_info["config"]["last_error"]
        assert refused_info["config"]["loads"] == loads
        fixed = dict(bad, services=[*data["services"], {"name": "orders"}])
        write_mesh(config, fixed)
        cleared = wait_config(api_port, viewer, lambda b: b["config"]["loads"] > loads)
        assert cleared["config"]["last_error"] is None
        orders = wait_config(api_port, viewer, lambda b: "sidecar:default/orders" in b["snapshots"])
        assert orders["config"]["trust_domain"] == "gossamer.local"
