"""`gossamer proxy` start-up errors are one clear line: a malformed token, a token the
control plane refuses (another service's, revoked), a bad flag; the process exits."""

from __future__ import annotations

import subprocess

import pytest

from gossamer.certs.tokens import TokenStore
from tests.helpers.procs import free_port, gossamer_cmd, processes
from tests.helpers.xds_mesh import REPO, XdsMesh, http_service

pytestmark = pytest.mark.e2e


def run_proxy(
    mesh: XdsMesh | None, *args: str, token: str = ""
) -> subprocess.CompletedProcess[str]:
    control = ["--control", f"127.0.0.1:{mesh.ports['xds']}",
               "--bootstrap", f"127.0.0.1:{mesh.ports['bootstrap']}"] if mesh else []  # fmt: skip
    ports = ["--inbound-port", str(free_port()), "--outbound-port", str(free_port()),
             "--admin-port", str(free_port()), "--metrics-port", str(free_port())]  # fmt: skip
    return subprocess.run(
        gossamer_cmd("proxy", *control, *ports, *(["--token", token] if token else []), *args),
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip


def one_line_error(out: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    return lines[0]


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("xds-cli")
    with processes() as procs:
        mesh = XdsMesh(tmp, procs, [http_service("web"), http_service("catalog")])
        mesh.start_control()
        yield mesh


def test_malformed_token(mesh: XdsMesh) -> None:
    out = run_proxy(mesh, "--service", "web", token="not-a-token")
    assert out.returncode == 1
    assert "join token" in one_line_error(out)


def test_token_of_another_service_is_refused(mesh: XdsMesh) -> None:
    out = run_proxy(mesh, "--service", "web", token=mesh.token("catalog"))
    assert out.returncode == 1
    line = one_line_error(out)
    assert "refused" in line and "catalog" in line and "web" in line


def test_revoked_token_is_refused(mesh: XdsMesh) -> None:
    token = mesh.token("web")
    store = TokenStore(mesh.tmp / "ca")
    store.revoke(token.split(".")[1])
    out = run_proxy(mesh, "--service", "web", token=token)
    assert out.returncode == 1
    assert "revoked" in one_line_error(out)


def test_usage_errors(mesh: XdsMesh) -> None:
    out = run_proxy(None, "--service", "web")
    assert out.returncode == 2
    assert "--control and a token" in one_line_error(out)
    out = run_proxy(mesh, "--service", "web", "--app-port", "80:http", token=mesh.token("web"))
    assert out.returncode == 2
    assert "--app-port" in one_line_error(out)
    out = run_proxy(mesh, "--service", "web", "--control", "nowhere", token=mesh.token("web"))
    assert out.returncode == 2 and "HOST:PORT" in one_line_error(out)
