"""Interop with an xDS client no one here wrote: gRPC's own (grpcio, `xds:///` target).

`gossamer control` runs as a real subprocess on an insecure port; a subprocess gRPC
client with GRPC_XDS_BOOTSTRAP pointing at it resolves service `echo` declared in
mesh.yaml with three real gRPC servers, spreads calls across all three (round robin),
stops calling a server within 2 s of its removal from mesh.yaml (file reload) while
that server is still up, and starts calling a newly added one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from tests.conftest import REPO
from tests.helpers.control_plane import control_plane_process, mesh, write_mesh
from tests.helpers.echo_servers import EchoServer

pytestmark = pytest.mark.e2e


def echo_mesh(servers: list[EchoServer]) -> dict[str, object]:
    return mesh(
        [
            {
                "name": "echo",
                "ports": [{"port": 50051, "protocol": "grpc"}],
                "lb_policy": "round_robin",
                "endpoints": [
                    {"address": "127.0.0.1", "port": s.port, "instance_id": s.name} for s in servers
                ],
            }
        ]
    )


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def test_grpc_xds_client_follows_mesh_yaml(tmp_path):
    servers = [EchoServer(f"s{i}") for i in range(1, 5)]
    s1, s2, s3, s4 = servers
    client = None
    try:
        with control_plane_process(tmp_path, echo_mesh([s1, s2, s3])) as (plane, target, config):
            bootstrap = tmp_path / "bootstrap.json"
            bootstrap.write_text(
                json.dumps(
                    {
                        "xds_servers": [
                            {
                                "server_uri": target,
                                "channel_creds": [{"type": "insecure"}],
                                "server_features": ["xds_v3"],
                            }
                        ],
                        "node": {"id": "interop-client", "locality": {}},
                    }
                )
            )
            out = open(tmp_path / "client.out", "wb")  # noqa: SIM115
            client = subprocess.Popen(
                [sys.executable, "-m", "tests.helpers.xds_echo_client", "xds:///echo:50051"],
                cwd=REPO,
                env=dict(os.environ, GRPC_XDS_BOOTSTRAP=str(bootstrap)),
                stdout=out,
                stderr=subprocess.STDOUT,
            )

            # 1. all three endpoints get calls, and round robin spreads them evenly
            wait_until(lambda: all(s.count() >= 3 for s in (s1, s2, s3)), 30, "calls to s1, s2, s3")
            mark = time.time()
            base = sum(s.count() for s in servers)
            wait_until(lambda: sum(s.count() for s in servers) - base >= 90, 20, "90 more calls")
            window = [s.count(since=mark) for s in (s1, s2, s3)]
            assert min(window) >= 0.2 * sum(window), f"uneven spread: {window}"
            assert s4.count() == 0

            # 2. remove s3 from mesh.yaml (s3 keeps running): no call reaches it after 2 s
            write_mesh(config, echo_mesh([s1, s2]))
            removed_at = time.time()
            time.sleep(2.5)  # the observation window the requirement is about
            last = s3.last_call()
            assert last is not None
            assert last < removed_at + 2.0, (
                f"s3 still called {last - removed_at:.2f}s after removal"
            )
            before = (s1.count(), s2.count())
            wait_until(
                lambda: s1.count() > before[0] + 5 and s2.count() > before[1] + 5,
                10,
                "calls to s1 and s2 after the removal",
            )
            print(f"s3 last called {max(0.0, last - removed_at):.3f}s after its removal")

            # 3. add s4: it starts receiving calls
            added_at = time.time()
            write_mesh(config, echo_mesh([s1, s2, s4]))
            wait_until(lambda: s4.count() >= 3, 10, "calls to the new endpoint s4")
            first = min(t for t in s4.calls)
            print(f"s4 first called {first - added_at:.3f}s after it was added")
            assert s3.count(since=removed_at + 2.0) == 0

            client.terminate()
            client.wait(10)
            out.close()
            lines = (tmp_path / "client.out").read_text().splitlines()
            results = [json.loads(line) for line in lines if line.startswith("{")]
            assert results, "the client printed nothing"
            assert "s4" in {r.get("server") for r in results}
        assert plane.proc is not None and plane.proc.returncode == 0, plane.log()
        log = plane.log()
        assert "configuration reloaded" in log
        assert "interop-client" in log
    finally:
        if client is not None and client.poll() is None:
            client.kill()
            client.wait()
        for server in servers:
            server.stop()
