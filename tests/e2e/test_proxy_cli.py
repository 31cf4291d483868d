"""`gossamer proxy` as a command: clear errors, iptables dry run, graceful stop,
certificate rotation on SIGHUP."""

from __future__ import annotations

import signal
import subprocess
import threading
from pathlib import Path

import pytest
from cryptography import x509

from tests.helpers.mesh import Mesh, config_doc, upstream
from tests.helpers.pki import make_workload
from tests.helpers.procs import free_port, gossamer_cmd, processes, wait_for

pytestmark = pytest.mark.e2e


def gossamer(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        gossamer_cmd(*args), capture_output=True, text=True, timeout=60, env=env
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


def test_usage_errors_are_one_line_with_a_hint(tmp_path: Path) -> None:
    out = gossamer("proxy")
    assert out.returncode == 2 and "--service is required" in out.stderr
    out = gossamer("proxy", "--service", "web")
    assert out.returncode == 2 and "--control and a token" in out.stderr and "hint:" in out.stderr
    out = gossamer("proxy", "--service", "web", "--control", "cp:15010", "--token", "x")
    assert out.returncode == 1 and "join token" in out.stderr  # malformed: refused at once
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "node: {service: web}\nclusters:\n  - name: c\n    service: s\n    port: 99999\n"
    )
    out = gossamer("proxy", "--service", "web", "--static-config", str(bad))
    assert out.returncode == 1
    assert f"{bad}:5: clusters[0].port: must be between 1 and 65535" in out.stderr
    good = tmp_path / "good.yaml"
    good.write_text("node: {service: web}\n")
    out = gossamer("proxy", "--service", "web", "--static-config", str(good))
    assert out.returncode == 2 and "--cert is required" in out.stderr
    out = gossamer("proxy", "--service", "web", "--app-port", "http", "--static-config", str(good))
    assert out.returncode == 2 and "expected PORT" in out.stderr


def test_iptables_dry_run_prints_the_rules() -> None:
    out = gossamer(
        "proxy",
        "iptables",
        "install",
        "--dry-run",
        "--proxy-uid",
        "1500",
        "--exclude-inbound-ports",
        "22",
    )
    assert out.returncode == 0
    assert "iptables -w -t nat -A GOSSAMER_OUTPUT -m owner --uid-owner 1500 -j RETURN" in out.stdout
    assert "--dport 22 -j RETURN" in out.stdout
    out = gossamer("proxy", "iptables", "install", "--dry-run", "--exclude-inbound-ports", "x")
    assert out.returncode == 2 and "not a port" in out.stderr


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with processes() as procs:
        mesh = Mesh(tmp_path, procs)
        first = mesh.sidecar("web", config_doc("web"))
        w = make_workload(mesh.ca, "web", tmp_path / "again")
        cfg = tmp_path / "web.yaml"
        cfg.write_text("node: {service: web}\n")
        out = gossamer(
            "proxy", "--service", "web", "--static-config", str(cfg), "--cert", str(w.chain_file),
            "--key", str(w.key_file), "--bundle", str(w.bundle_file),
            "--admin-port", str(free_port()), "--inbound-port", str(free_port()),
            "--outbound-port", str(first.outbound), "--metrics-port", "0",
        )  # fmt: skip
        assert out.returncode == 1
        assert f"cannot listen on port {first.outbound} (outbound)" in out.stderr


def test_sigterm_lets_in_flight_requests_finish(tmp_path: Path) -> None:
    with processes() as procs:
        mesh = Mesh(tmp_path, procs)
        app = mesh.app("catalog")
        catalog = mesh.sidecar("catalog", config_doc("catalog", app_ports=[(app, "http")]))
        web = mesh.sidecar(
            "web",
            config_doc(
                "web", upstreams=[upstream("catalog", [("127.0.0.1", catalog.inbound)], port=app)]
            ),
        )
        results: list[str] = []
        proxy = f"http://127.0.0.1:{web.outbound}"

        def slow() -> None:
            out = subprocess.run(
                ["curl", "-s", "-x", proxy, f"http://catalog:{app}/slow/1000"],
                capture_output=True, text=True, timeout=20,
            )  # fmt: skip
            results.append(out.stdout)

        thread = threading.Thread(target=slow)
        thread.start()

        def in_flight() -> bool:
            eps = web.admin_json("/clusters")["clusters"][0]["endpoints"]
            return any(e["active_requests"] for e in eps)

        wait_for(in_flight, what="request in flight")
        web.process.signal(signal.SIGTERM)
        thread.join(15)
        assert results == ["catalog slow\n"]
        assert web.process.proc.wait(10) == 0
        refused = subprocess.run(
            ["curl", "-s", "-x", proxy, f"http://catalog:{app}/"], capture_output=True, timeout=10
        )
        assert refused.returncode == 7  # could not connect: the listener is gone


def test_sighup_rotates_the_certificate(tmp_path: Path) -> None:
    with processes() as procs:
        mesh = Mesh(tmp_path, procs)
        app = mesh.app("catalog")
        catalog = mesh.sidecar("catalog", config_doc("catalog", app_ports=[(app, "http")]))
        serial = catalog.admin_json("/config_dump")["certificate"]["serial"]
        renewed = make_workload(mesh.ca, "catalog", tmp_path / "renewed")
        catalog.workload.chain_file.write_bytes(renewed.chain_pem)
        catalog.workload.key_file.write_bytes(renewed.key_pem)
        catalog.reconfigure(catalog.config)
        after = catalog.admin_json("/config_dump")["certificate"]["serial"]
        assert after != serial
        served = subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{catalog.inbound}", "-tls1_3",
             "-CAfile", str(renewed.bundle_file), "-cert", str(renewed.chain_file),
             "-cert_chain", str(renewed.chain_file), "-key", str(renewed.key_file)],
            input="", capture_output=True, text=True, timeout=20,
        )  # fmt: skip
        pem = served.stdout[served.stdout.index("-----BEGIN CERTIFICATE-----") :]
        pem = pem[: pem.index("-----END CERTIFICATE-----") + 25]
        presented = x509.load_pem_x509_certificate(pem.encode())
        assert f"{presented.serial_number:x}" == after  # new connections get the new leaf
