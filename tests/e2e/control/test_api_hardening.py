"""The operator API of a real `gossamer control` process (issue 17, findings 9 and 12):
the reserved `gossamer-system` namespace, 400 (not 500) for bad parameters, and the
audit log of refused requests, failed changes and certificate issuance; and the audit
of `gossamer token create/revoke` on the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gossamer.proxy.agent.bootstrap import bootstrap
from tests.helpers.control_plane import control_plane_process, web_mesh
from tests.helpers.operator_api import api_call
from tests.helpers.procs import free_port, run_gossamer

pytestmark = pytest.mark.e2e
TD = "gossamer.local"


class Api:
    def __init__(self, port: int, admin: str) -> None:
        self.port, self.admin = port, admin

    def call(
        self, path: str, token: str | None, method: str = "GET", body: Any = None
    ) -> tuple[int, dict[str, Any]]:
        return api_call(self.port, path, token, method, body)

    def audit(self) -> list[dict[str, Any]]:
        status, body = self.call("/v1/audit?limit=1000", self.admin)
        assert status == 200, body
        entries: list[dict[str, Any]] = body["entries"]
        return entries


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("api")
    api_port, boot_port = free_port(), free_port()
    data = web_mesh(tmp, xds_port=free_port(), bootstrap_port=boot_port, api_port=api_port)
    with control_plane_process(tmp, data) as (process, _target, _config):
        admin = (tmp / "data" / "admin-token").read_text().strip()
        api = Api(api_port, admin)
        status, made = api.call(
            "/v1/api-tokens", admin, "POST", {"name": "ops", "role": "operator"}
        )
        assert status == 201, made
        yield api, made["token"], boot_port, process


def test_reserved_namespace_needs_admin_and_control_identity_is_never_a_token(plane):
    api, operator, _boot, _process = plane
    status, body = api.call(
        "/v1/tokens", operator, "POST", {"service": "control", "namespace": "gossamer-system"}
    )
    assert status == 403 and "reserved" in body["error"], body
    status, body = api.call(
        "/v1/tokens", operator, "POST", {"service": "anything", "namespace": "gossamer-system"}
    )
    assert status == 403, body
    # an admin may use the namespace, but never for the control plane's own identity
    status, body = api.call(
        "/v1/tokens", api.admin, "POST", {"service": "control", "namespace": "gossamer-system"}
    )
    assert status == 400 and "control plane's own identity" in body["error"], body
    status, body = api.call(
        "/v1/tokens", api.admin, "POST", {"service": "metrics", "namespace": "gossamer-system"}
    )
    assert status == 201, body
    # ordinary namespaces stay open to operators
    status, body = api.call("/v1/tokens", operator, "POST", {"service": "web"})
    assert status == 201, body
    denied = [e for e in api.audit() if e["outcome"] == "denied" and e["who"] == "ops"]
    assert len(denied) == 2 and all(e["status"] == 403 for e in denied)


@pytest.mark.parametrize(
    ("path", "method", "body", "field"),
    [
        ("/v1/audit?limit=abc", "GET", None, "limit"),
        ("/v1/audit?limit=-5", "GET", None, "limit"),
        ("/v1/tokens", "POST", {"service": "web", "ttl": "0s"}, "ttl"),
        ("/v1/tokens", "POST", {"service": "web", "ttl": "soon"}, "ttl"),
    ],
)
def test_bad_parameters_are_400_naming_the_parameter(plane, path, method, body, field):
    api, _operator, _boot, process = plane
    status, answer = api.call(path, api.admin, method, body)
    assert status == 400, answer
    assert field in answer["error"], answer
    assert process.alive()


def test_audit_records_401s_failures_and_certificate_issuance(plane):
    api, operator, boot_port, _process = plane
    assert api.call("/v1/services", None)[0] == 401
    assert api.call("/v1/tokens", "not-a-token", "POST", {"service": "web"})[0] == 401
    assert api.call("/v1/tokens/nope1234", operator, "DELETE")[0] == 404
    status, join = api.call("/v1/tokens", operator, "POST", {"service": "web"})
    assert status == 201
    import asyncio

    creds = asyncio.run(bootstrap("127.0.0.1", boot_port, join["token"], "web", "default", TD))
    entries = api.audit()
    unauth = [e for e in entries if e["outcome"] == "unauthenticated"]
    assert {e["action"] for e in unauth} >= {"GET /v1/services", "POST /v1/tokens"}
    assert all(e["status"] == 401 and e["peer"] == "127.0.0.1" for e in unauth)
    failed = [e for e in entries if e["outcome"] == "failed"]
    assert any(e["action"] == "DELETE /v1/tokens/nope1234" and e["status"] == 404 for e in failed)
    issued = [e for e in entries if e["action"] == "issue certificate"]
    assert [e["target"] for e in issued] == [creds.spiffe_id]
    assert issued[0]["mode"] == "bootstrap"


def test_cli_token_create_and_revoke_are_audited(tmp_path: Path):
    ca = tmp_path / "ca"
    assert run_gossamer("certs", "init", "--trust-domain", TD, "--dir", str(ca)).returncode == 0
    made = run_gossamer("token", "create", "--service", "web", "--dir", str(ca), "-o", "json")
    assert made.returncode == 0, made.stderr
    token_id = json.loads(made.stdout)["id"]
    revoked = run_gossamer("token", "revoke", token_id, "--dir", str(ca))
    assert revoked.returncode == 0, revoked.stderr
    lines = [json.loads(x) for x in (ca / "audit.log").read_text().splitlines()]
    assert [(e["action"], e["outcome"]) for e in lines] == [
        ("create join token", "ok"),
        ("revoke join token", "ok"),
    ]
    assert lines[0]["target"] == "web.default" and lines[0]["token_id"] == token_id
    assert lines[1]["target"] == token_id and lines[0]["role"] == "local"
    assert "gst1." not in (ca / "audit.log").read_text()  # never the secret
    # and the control plane's identity is refused on the command line too
    control = run_gossamer(
        "token", "create", "--service", "control", "--namespace", "gossamer-system",
        "--dir", str(ca),
    )  # fmt: skip
    assert control.returncode != 0 and "control plane's own identity" in control.stderr
