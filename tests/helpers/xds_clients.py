"""Proxyless xDS clients written by others: grpcio (C-core), gRPC-Go and gRPC-Java.

Each runs as a subprocess bootstrapped to the control plane's insecure xDS port and calls
`/echo.Echo/Who` every 10 ms, printing one JSON line per call (`{"t", "server"}` or
`{"t", "error"}`): `tests/helpers/xds_echo_client.py` (grpcio), and the programs under
`tests/peers/` (built by `tests/peers/build-peers` into a cache outside the repository,
on first use). The Go and Java clients also serve gRPC's Client Status Discovery Service
(CSDS), which says for each xDS resource they hold whether they ACKed or NACKed it.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import grpc
from envoy.admin.v3 import config_dump_shared_pb2
from envoy.service.status.v3 import csds_pb2

from tests.conftest import REPO
from tests.helpers.procs import free_port

KINDS = ("grpcio", "grpc-go", "grpc-java")
CSDS = "/envoy.service.status.v3.ClientStatusDiscoveryService/FetchClientStatus"


@functools.cache
def peer_folder(language: str) -> Path:
    """Build (or find in the cache) one language's peers; their folder."""
    done = subprocess.run(
        [str(REPO / "tests" / "peers" / "build-peers"), language],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"building the {language} peers failed:\n{done.stderr[-4000:]}")
    for line in done.stdout.splitlines():
        name, _, value = line.partition("=")
        if name.endswith("_PEERS") and value:
            return Path(value)
    raise RuntimeError(f"build-peers {language} printed no folder: {done.stdout!r}")


def write_bootstrap(path: Path, target: str, node_id: str, zone: str) -> Path:
    path.write_text(
        json.dumps(
            {
                "xds_servers": [
                    {
                        "server_uri": target,
                        "channel_creds": [{"type": "insecure"}],
                        "server_features": ["xds_v3"],
                    }
                ],
                "node": {"id": node_id, "locality": {"zone": zone}},
            }
        )
    )
    return path


@dataclass
class Call:
    t: float
    server: str | None
    error: str | None


class XdsClient:
    """One client process; `calls()` reads what it printed so far."""

    def __init__(self, kind: str, target: str, bootstrap: Path, out: Path) -> None:
        self.kind = kind
        self.out = out
        self.csds_port = free_port() if kind != "grpcio" else 0
        command = self._command(kind, target)
        env = dict(os.environ, GRPC_XDS_BOOTSTRAP=str(bootstrap))
        self._file: IO[bytes] = open(out, "wb")  # noqa: SIM115 - closed in stop()
        self._err = open(out.with_suffix(".log"), "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=self._file, stderr=self._err
        )

    def _command(self, kind: str, target: str) -> list[str]:
        if kind == "grpcio":
            return [sys.executable, "-m", "tests.helpers.xds_echo_client", target]
        flags = ["--interval", "0.01", "--max-seconds", "600", "--csds-port", str(self.csds_port)]
        if kind == "grpc-go":
            return [str(peer_folder("go") / "xds-client"), *flags, target]
        if kind == "grpc-java":
            jar = peer_folder("java") / "xds-client.jar"
            return ["java", "-Xmx256m", "-XX:+UseSerialGC", "-jar", str(jar), *flags, target]
        raise ValueError(kind)

    def calls(self) -> list[Call]:
        out = []
        for line in self.out.read_text(errors="replace").splitlines():
            if not line.startswith('{"t"'):
                continue
            try:
                item = json.loads(line)
            except ValueError:
                continue  # a line being written
            out.append(Call(float(item["t"]), item.get("server"), item.get("error")))
        return out

    def log(self) -> str:
        return self.out.with_suffix(".log").read_text(errors="replace")[-6000:]

    def resource_status(self) -> dict[tuple[str, str], str]:
        """(type URL, name) -> ACKED/NACKED/..., from the client's own CSDS."""
        with grpc.insecure_channel(f"127.0.0.1:{self.csds_port}") as channel:
            fetch = channel.unary_unary(
                CSDS,
                request_serializer=csds_pb2.ClientStatusRequest.SerializeToString,
                response_deserializer=csds_pb2.ClientStatusResponse.FromString,
            )
            reply: Any = fetch(csds_pb2.ClientStatusRequest(), timeout=10)
        names = config_dump_shared_pb2.ClientResourceStatus.Name
        return {
            (g.type_url, g.name): names(g.client_status)
            for config in reply.config
            for g in config.generic_xds_configs
        }

    def stop(self) -> None:
        terminate(self.proc)
        self._file.close()
        self._err.close()


class GoEchoServer:
    """The gRPC-Go test server: answers `/echo.Echo/Who` with its name."""

    def __init__(self, name: str) -> None:
        self.name = name
        binary = peer_folder("go") / "echo-server"
        self.proc = subprocess.Popen(
            [str(binary), "--name", name, "--port", "0"], stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline()
        self.port = int(json.loads(first)["port"])

    def stop(self) -> None:
        terminate(self.proc)


def terminate(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM (a graceful stop), SIGKILL after 10 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)
