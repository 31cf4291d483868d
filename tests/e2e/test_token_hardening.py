"""Join tokens live short and are seen by few (issue 17, finding 8), over a real
`gossamer control` process, real `gossamer proxy` sidecars and the real CLI:

- a token admits one sidecar instance; that instance restarting is admitted again, a
  second instance is refused; `reusable: N` (API) admits N;
- a token longer than control.max_token_ttl (24h) is refused (API 400, CLI error) unless
  mesh.yaml raises the cap; a leaf asked for 30 days lives 24 h;
- `gossamer proxy --token` still works but warns on stderr (the secret is in `ps`);
- `gossamer token create --output-file F` writes F with mode 0600 and never replaces it
  without --force; `--count N --output-dir DIR` writes N such files, named as `inject
  --join --token-dir` reads them, from the CA directory or through the API.
"""

from __future__ import annotations

import asyncio
import json
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gossamer.errors import AuthorizationDenied
from gossamer.proxy.agent.bootstrap import WorkloadCredentials, bootstrap
from gossamer.proxy.main import TOKEN_FLAG_WARNING
from tests.helpers.control_plane import control_plane_process, web_mesh, write_mesh
from tests.helpers.operator_api import api_call
from tests.helpers.procs import Process, free_port, gossamer_cmd, http_get, run_gossamer, wait_for

pytestmark = pytest.mark.e2e
TD = "gossamer.local"


@dataclass
class Plane:
    tmp: Path
    ca: Path
    config: Path
    api_port: int
    xds_port: int
    boot_port: int
    admin: str


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    tmp = tmp_path_factory.mktemp("tokens")
    api_port, xds_port, boot_port = free_port(), free_port(), free_port()
    data = web_mesh(tmp, xds_port=xds_port, bootstrap_port=boot_port, api_port=api_port)
    with control_plane_process(tmp, data) as (_process, _target, config):
        admin = (tmp / "data" / "admin-token").read_text().strip()
        yield Plane(tmp, tmp / "ca", config, api_port, xds_port, boot_port, admin)


def _sidecar(plane: Plane, name: str, instance: str, *extra: str, env=None) -> Process:
    admin = free_port()
    args = gossamer_cmd(
        "proxy", "--service", "web", "--instance-id", instance,
        "--control", f"127.0.0.1:{plane.xds_port}",
        "--bootstrap", f"127.0.0.1:{plane.boot_port}",
        "--inbound-port", str(free_port()), "--outbound-port", str(free_port()),
        "--admin-port", str(admin), "--metrics-port", str(free_port()), *extra,
    )  # fmt: skip
    proc = Process(args, plane.tmp / f"{name}.log", env=env)
    proc.admin_port = admin  # type: ignore[attr-defined]
    return proc


def _certified(proc: Process) -> bool:
    try:
        _status, body = http_get(f"http://127.0.0.1:{proc.admin_port}/ready")  # type: ignore[attr-defined]
    except OSError:
        return False
    return "certificate" not in json.loads(body)["missing"]


def _token_record(plane: Plane, token_id: str) -> dict[str, object]:
    """The token as the control plane's API lists it (with the instances it admitted,
    which the control plane records in its data directory, not the CA directory)."""
    status, listed = api_call(plane.api_port, "/v1/tokens", plane.admin)
    assert status == 200, listed
    record: dict[str, object] = next(r for r in listed["tokens"] if r["id"] == token_id)
    return record


def _bootstrap(
    plane: Plane, token: str, instance: str, ttl_seconds: int = 0
) -> WorkloadCredentials:
    """A web instance's first certificate from the plane, with `token`."""
    return asyncio.run(
        bootstrap(
            "127.0.0.1",
            plane.boot_port,
            token,
            "web",
            "default",
            TD,
            ttl_seconds=ttl_seconds,
            instance_id=instance,
        )
    )


def test_a_token_admits_its_instance_again_and_no_other(plane: Plane):
    token_file = plane.tmp / "web.token"
    made = run_gossamer(
        "token", "create", "--service", "web", "--dir", str(plane.ca),
        "--output-file", str(token_file), "-o", "json",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    token_id = json.loads(made.stdout)["id"]
    token = token_file.read_text().strip()
    first = _sidecar(plane, "first", "web-a", "--token-file", str(token_file))
    try:
        wait_for(lambda: _certified(first), 30, what="the first sidecar is certified")
    finally:
        first.stop()
    record = _token_record(plane, token_id)
    assert (record["used"], record["uses"], record["status"]) == (1, 1, "used")
    # the same instance restarting presents the token again ($GOSSAMER_TOKEN): admitted
    again = _sidecar(plane, "again", "web-a", env={"GOSSAMER_TOKEN": token})
    try:
        wait_for(lambda: _certified(again), 30, what="the restarted sidecar is certified")
        assert TOKEN_FLAG_WARNING not in again.output()
    finally:
        again.stop()
    # a second instance is refused with the reason, and ends (--token still works: warns)
    other = _sidecar(plane, "other", "web-b", "--token", token)
    try:
        wait_for(lambda: not other.alive(), 30, what="the second instance gives up")
        out = other.output()
        assert other.proc.returncode != 0
        assert "already admitted 1 instance(s), all it allows" in out, out[-2000:]
        assert out.count(TOKEN_FLAG_WARNING) == 1
    finally:
        other.stop()
    assert _token_record(plane, token_id)["used"] == 1


def test_reusable_token_from_the_api_admits_that_many_instances(plane: Plane):
    status, made = api_call(
        plane.api_port, "/v1/tokens", plane.admin, "POST", {"service": "web", "reusable": 2}
    )
    assert status == 201, made
    assert (made["uses"], made["used"]) == (2, 0)

    def join(instance: str) -> None:
        _bootstrap(plane, made["token"], instance)

    join("x")
    join("y")
    join("x")  # a restart of x takes no use
    with pytest.raises(AuthorizationDenied, match="already admitted 2 instance"):
        join("z")
    status, body = api_call(
        plane.api_port, "/v1/tokens", plane.admin, "POST", {"service": "web", "reusable": 0}
    )
    assert status == 400 and "reusable" in body["error"], body


def test_token_ttl_above_the_cap_is_refused_unless_mesh_yaml_raises_it(plane: Plane):
    status, body = api_call(
        plane.api_port, "/v1/tokens", plane.admin, "POST", {"service": "web", "ttl": "168h"}
    )
    assert status == 400, body
    assert "at most 24h" in body["error"] and "ttl" in body["error"], body
    status, body = api_call(
        plane.api_port, "/v1/tokens", plane.admin, "POST", {"service": "web", "ttl": "24h"}
    )
    assert status == 201, body
    long = run_gossamer(
        "token", "create", "--service", "web", "--ttl", "720h", "--dir", str(plane.ca)
    )
    assert long.returncode != 0 and "at most 24h" in long.stderr, long.stderr
    raised = plane.tmp / "raised.yaml"
    write_mesh(raised, {"trust_domain": TD, "control": {"max_token_ttl": "720h"}})
    made = run_gossamer(
        "token", "create", "--service", "web", "--ttl", "720h", "--dir", str(plane.ca),
        "--config", str(raised), "-o", "json",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    record = json.loads(made.stdout)
    assert record["expires"] - record["created"] == pytest.approx(720 * 3600, abs=5)


def test_a_leaf_asked_for_30_days_lives_24_hours(plane: Plane):
    status, made = api_call(plane.api_port, "/v1/tokens", plane.admin, "POST", {"service": "web"})
    assert status == 201, made
    creds = _bootstrap(plane, made["token"], "long", ttl_seconds=30 * 86400)
    life = (creds.not_after - creds.not_before).total_seconds()
    assert life <= 24 * 3600 + 120, life  # not_before is backdated a little


def test_output_file_is_0600_and_never_replaced_without_force(plane: Plane):
    target = plane.tmp / "out" / "web.token"
    target.parent.mkdir()
    made = run_gossamer("token", "create", "--service", "web", "--dir", str(plane.ca),
               "--output-file", str(target))  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "gst1." not in made.stdout + made.stderr  # the secret only in the file
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    first = target.read_text()
    assert first.startswith("gst1.")
    before = len(
        json.loads(run_gossamer("token", "list", "--dir", str(plane.ca), "-o", "json").stdout)
    )
    again = run_gossamer("token", "create", "--service", "web", "--dir", str(plane.ca),
                "--output-file", str(target))  # fmt: skip
    assert again.returncode != 0 and "exists" in again.stderr and "--force" in again.stderr
    assert target.read_text() == first
    after = len(
        json.loads(run_gossamer("token", "list", "--dir", str(plane.ca), "-o", "json").stdout)
    )
    assert after == before  # refused before a token was made
    time.sleep(0.01)
    forced = run_gossamer("token", "create", "--service", "web", "--dir", str(plane.ca),
                 "--output-file", str(target), "--force")  # fmt: skip
    assert forced.returncode == 0, forced.stderr
    assert target.read_text() != first
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_count_and_output_dir_write_token_files_for_another_host(plane: Plane):
    def listed() -> int:
        out = run_gossamer("token", "list", "--dir", str(plane.ca), "-o", "json").stdout
        return len(json.loads(out))

    out_dir = plane.tmp / "host-2"
    before = listed()
    made = run_gossamer("token", "create", "--service", "web", "--count", "3", "--dir",
                        str(plane.ca), "--output-dir", str(out_dir))  # fmt: skip
    assert made.returncode == 0, made.stderr
    files = sorted(p.name for p in out_dir.iterdir())
    assert files == ["web-1.token", "web-2.token", "web-3.token"]
    secrets = {(out_dir / f).read_text() for f in files}
    assert len(secrets) == 3 and all(s.startswith("gst1.") for s in secrets)
    assert all(stat.S_IMODE((out_dir / f).stat().st_mode) == 0o600 for f in files)
    assert "gst1." not in made.stdout + made.stderr
    assert listed() == before + 3
    again = run_gossamer("token", "create", "--service", "web", "--count", "3", "--dir",
                         str(plane.ca), "--output-dir", str(out_dir))  # fmt: skip
    assert again.returncode != 0 and "not overwriting" in again.stderr
    assert listed() == before + 3  # refused before any token was made
    both = run_gossamer("token", "create", "--service", "web", "--count", "2", "--dir",
                        str(plane.ca), "--output-file", str(plane.tmp / "x.token"))  # fmt: skip
    assert both.returncode != 0 and "--output-dir" in both.stderr
    assert "Traceback" not in both.stderr
    # through the operator API, in the reserved namespace: the file name says so
    api = f"http://127.0.0.1:{plane.api_port}"
    gw = run_gossamer("token", "create", "--service", "gateway", "--namespace",
                      "gossamer-system", "--allow-address", "10.0.0.2", "--api", api,
                      "--token", plane.admin, "--output-dir", str(out_dir))  # fmt: skip
    assert gw.returncode == 0, gw.stderr
    token = (out_dir / "gateway.gossamer-system.token").read_text().strip()
    status, body = api_call(plane.api_port, "/v1/tokens", plane.admin)
    assert status == 200, body
    rows = body["tokens"]
    row = next(r for r in rows if r["id"] == token.split(".")[1])
    assert row["service"] == "gateway" and row["addresses"] == ["10.0.0.2"]
