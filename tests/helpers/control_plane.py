"""Run a control plane for tests: in-process (protocol tests) or as a real
`gossamer control` subprocess (end-to-end), with a mesh.yaml written from a dict."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from ruamel.yaml import YAML

from gossamer.control.server import ControlPlane

from .net import free_port


def mesh_yaml(data: Mapping[str, Any]) -> str:
    out = io.StringIO()
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.dump(dict(data), out)
    return out.getvalue()


def write_mesh(path: Path, data: Mapping[str, Any]) -> None:
    """Replace the file atomically, as an editor or a deploy tool would."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(mesh_yaml(data))
    os.replace(tmp, path)


def mesh(services: list[dict[str, Any]], *, insecure_port: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "trust_domain": "gossamer.local",
        "control": {
            "insecure_xds_listen": f"127.0.0.1:{insecure_port}",
            "xds_listen": "127.0.0.1:0",
            "bootstrap_listen": "127.0.0.1:0",
            "api_listen": "127.0.0.1:0",
        },
        "services": services,
        **extra,
    }


def web_mesh(tmp: Path, *, xds_port: int, bootstrap_port: int, api_port: int) -> dict[str, Any]:
    """A mesh.yaml for `control_plane_process`: xDS, bootstrap and the operator API on
    those loopback ports, the CA and data under `tmp`, one service: web (HTTP on 8080)."""
    return {
        "trust_domain": "gossamer.local",
        "control": {
            "xds_listen": f"127.0.0.1:{xds_port}",
            "bootstrap_listen": f"127.0.0.1:{bootstrap_port}",
            "api_listen": f"127.0.0.1:{api_port}",
            "ca_dir": str(tmp / "ca"),
            "data_dir": str(tmp / "data"),
        },
        "services": [{"name": "web", "ports": [{"port": 8080, "protocol": "http"}]}],
    }


@contextlib.asynccontextmanager
async def running_control_plane(
    tmp_path: Path,
    data: Mapping[str, Any],
    *,
    trust_bundle: bytes | None = None,
    servicers: Iterable[Callable[[grpc.aio.Server], None]] = (),
) -> AsyncIterator[tuple[ControlPlane, str]]:
    """An in-process control plane on an ephemeral port; yields it and its target."""
    config = tmp_path / "mesh.yaml"
    write_mesh(config, data)
    plane = ControlPlane(
        config, reload_interval=3600, secure=False, trust_bundle_loader=lambda _dir: trust_bundle
    )
    for register in servicers:
        plane.add_servicer(register)
    await plane.start()
    try:
        yield plane, f"127.0.0.1:{plane.bound_port('insecure_xds')}"
    finally:
        await plane.stop(grace=0.2)


async def reload_now(plane: ControlPlane, path: Path, data: Mapping[str, Any]) -> None:
    """Rewrite mesh.yaml and make the plane apply it at once (as SIGHUP would), through
    the registry store, until the snapshots reflect it."""
    write_mesh(path, data)
    assert plane.watcher.check(force=True), plane.watcher.last_error
    await plane.settle()


class ControlPlaneProcess:
    """`gossamer control --config <file>` in a subprocess, stopped with SIGTERM."""

    def __init__(self, config: Path, log_path: Path, *, reload_interval: float = 0.2) -> None:
        self.config = config
        self.log_path = log_path
        self.reload_interval = reload_interval
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, port: int, timeout: float = 20.0) -> None:
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        env = dict(os.environ, GOSSAMER_LOG_FORMAT="json", PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gossamer.cli.main",
                "control",
                "--config",
                str(self.config),
                "--reload-interval",
                str(self.reload_interval),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        wait_serving(f"127.0.0.1:{port}", timeout, self)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 10.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def wait_serving(target: str, timeout: float, process: ControlPlaneProcess | None = None) -> None:
    """Poll the gRPC health service until it says SERVING."""
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            if process is not None and not process.alive():
                raise RuntimeError(f"control plane exited early:\n{process.log()}")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=0.5)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"control plane at {target} not serving within {timeout}s")
            time.sleep(0.05)


@contextlib.contextmanager
def control_plane_process(
    tmp_path: Path, data: Mapping[str, Any]
) -> Iterator[tuple[ControlPlaneProcess, str, Path]]:
    port = free_port()
    data = dict(data)
    data["control"] = dict(data["control"], insecure_xds_listen=f"127.0.0.1:{port}")
    config = tmp_path / "mesh.yaml"
    write_mesh(config, data)
    process = ControlPlaneProcess(config, tmp_path / "control.log")
    process.start(port)
    try:
        yield process, f"127.0.0.1:{port}", config
    finally:
        process.stop()
