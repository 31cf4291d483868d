"""`gossamer control` as a real process: start-up errors, reloads, SIGHUP, shutdown."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from gossamer.contract import xds
from tests.helpers.ads_client import AdsClient
from tests.helpers.control_plane import ControlPlaneProcess, mesh, mesh_yaml, write_mesh
from tests.helpers.net import free_port
from tests.helpers.procs import run_gossamer

pytestmark = pytest.mark.e2e


def test_invalid_config_at_start_is_one_clear_line(tmp_path):
    config = tmp_path / "mesh.yaml"
    config.write_text(
        "control:\n  insecure_xds_listen: 127.0.0.1:0\n"
        "services:\n  - name: echo\n  - name: web\n    lb_policy: fastest\n"
    )
    line = 6
    result = run_gossamer("control", "--config", str(config))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"mesh.yaml:{line}: services[1].lb_policy: must be one of" in result.stderr


def test_ca_of_another_trust_domain_is_explained(tmp_path):
    from gossamer.certs.ca import CertificateAuthority

    CertificateAuthority.init(tmp_path / "ca", "other.example")
    config = tmp_path / "mesh.yaml"
    config.write_text(
        "trust_domain: gossamer.local\n"
        "control: {ca_dir: ca, xds_listen: '127.0.0.1:0', bootstrap_listen: '127.0.0.1:0',"
        " api_listen: '127.0.0.1:0'}\n"
    )
    result = run_gossamer("control", "--config", str(config))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "trust domain other.example" in result.stderr and "hint:" in result.stderr


def cluster_names(response) -> set[str]:
    return set(AdsClient.decode(response))


def services(*names_: str) -> list[dict[str, object]]:
    return [{"name": n, "ports": [{"port": 8080}]} for n in names_]


def start_plane(
    tmp_path: Path, reload_interval: float = 0.2
) -> tuple[ControlPlaneProcess, int, Path]:
    """A `gossamer control` process serving service `a` on a free insecure port: (the
    process, that port, its mesh.yaml)."""
    port = free_port()
    config = tmp_path / "mesh.yaml"
    write_mesh(config, mesh(services("a"), insecure_port=port))
    plane = ControlPlaneProcess(config, tmp_path / "control.log", reload_interval=reload_interval)
    plane.start(port)
    return plane, port, config


async def wait_for_log(plane: ControlPlaneProcess, text: str, timeout: float) -> str:
    """The process's log once it contains `text`; fails after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while text not in (log := plane.log()):
        if loop.time() > deadline:
            raise AssertionError(f"{text!r} not logged within {timeout}s:\n{log[-2000:]}")
        await asyncio.sleep(0.05)
    return log


async def fixed_on_sighup(
    plane: ControlPlaneProcess, client: AdsClient, config: Path, port: int
) -> None:
    """A valid mesh.yaml (services a and b), then SIGHUP: the client is sent both."""
    write_mesh(config, mesh(services("a", "b"), insecure_port=port))
    assert plane.proc is not None
    plane.proc.send_signal(signal.SIGHUP)
    second = await client.recv()
    assert cluster_names(second) == {"outbound|8080||a.default", "outbound|8080||b.default"}


async def test_bad_reload_keeps_serving_then_sighup_applies_a_fix(tmp_path):
    # a poll interval far longer than the test: only SIGHUP makes it look at the file
    plane, port, config = start_plane(tmp_path, reload_interval=3600)
    try:
        async with AdsClient(f"127.0.0.1:{port}", "n1") as client:
            await client.request(xds.CLUSTER)
            first = await client.recv()
            await client.ack(first)
            assert cluster_names(first) == {"outbound|8080||a.default"}

            bad = mesh(services("a"), insecure_port=port)
            bad["services"].append({"name": "BAD"})
            config.write_text(mesh_yaml(bad))
            assert plane.proc is not None
            plane.proc.send_signal(signal.SIGHUP)
            # bounded wait for the rejection this test is about (not a fixed silence that
            # would pass just as well if the reload had not happened yet)
            log = await wait_for_log(plane, "configuration rejected", timeout=30.0)
            assert "services[1].name" in log and "mesh.yaml:" in log
            # the reload is over and was rejected: nothing new was or is served
            await client.expect_silence(0.5)
            assert plane.alive()

            await fixed_on_sighup(plane, client, config, port)
    finally:
        code = plane.stop()
    assert code == 0, plane.log()
    assert "shutting down" in plane.log()


def test_sigint_stops_cleanly(tmp_path):
    plane, _, _ = start_plane(tmp_path)
    assert plane.proc is not None
    plane.proc.send_signal(signal.SIGINT)
    assert plane.proc.wait(10) == 0
    plane.stop()
    assert "Traceback" not in plane.log()


def test_port_in_use_is_an_error_not_a_shared_port(tmp_path):
    plane, port, config = start_plane(tmp_path)
    try:
        # the same registry file is locked by the first process
        same = run_gossamer("control", "--config", str(config))
        assert same.returncode == 1 and "in use by another process" in same.stderr
        # its own registry, the same port: the port must not be shared silently
        other = tmp_path / "other"
        other.mkdir()
        write_mesh(other / "mesh.yaml", mesh(services("a"), insecure_port=port))
        second = run_gossamer("control", "--config", str(other / "mesh.yaml"))
        assert second.returncode == 1
        assert f"cannot listen on 127.0.0.1:{port}" in second.stderr and "hint:" in second.stderr
    finally:
        assert plane.stop() == 0


@pytest.mark.parametrize(
    "hostile",
    [
        pytest.param("services: " + "[" * 20000 + "]" * 20000 + "\n", id="nested-20000"),
        pytest.param(
            "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
            + "".join(
                f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n"
                for i in range(7)
            ),
            id="aliases-10^8",
        ),
        pytest.param("x: " + "y" * (5 * 1024 * 1024) + "\n", id="5MiB"),
    ],
)
async def test_hostile_mesh_yaml_is_refused_and_reload_keeps_working(tmp_path, hostile):
    """Finding 1 of issue 17: a deeply nested file raised RecursionError out of the
    watcher, which then ignored every later edit and SIGHUP."""
    # a poll interval far longer than the test: only SIGHUP makes it look at the file
    plane, port, config = start_plane(tmp_path, reload_interval=3600)
    try:
        async with AdsClient(f"127.0.0.1:{port}", "n1") as client:
            await client.request(xds.CLUSTER)
            await client.ack(await client.recv())
            config.write_text(hostile)
            assert plane.proc is not None
            plane.proc.send_signal(signal.SIGHUP)
            await client.expect_silence(1.0)
            for _ in range(50):  # bounded: at most 10 s more
                if "configuration rejected" in plane.log():
                    break
                await asyncio.sleep(0.2)
            assert plane.alive()
            log = plane.log()
            assert "configuration rejected" in log
            assert any(
                words in log for words in ("nested", "values (with aliases", "larger than")
            ), log[-2000:]

            await fixed_on_sighup(plane, client, config, port)
    finally:
        code = plane.stop()
    assert code == 0, plane.log()
