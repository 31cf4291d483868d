"""`gossamer top` on a terminal redraws live until interrupted (a real pseudo-terminal)."""

from __future__ import annotations

import asyncio
import os
import pty
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers.operator_api import operator_api
from tests.helpers.sim_mesh import SimMesh

pytestmark = pytest.mark.e2e
TITLE = b"busiest routes from the sidecars"


def read_until(fd: int, count: int, timeout: float) -> bytes:
    """Read the terminal until `TITLE` has been drawn `count` times (or time runs out)."""
    out = b""
    deadline = time.monotonic() + timeout
    os.set_blocking(fd, False)
    while out.count(TITLE) < count and time.monotonic() < deadline:
        try:
            out += os.read(fd, 65536)
        except BlockingIOError:
            time.sleep(0.05)
        except OSError:
            break
    return out


async def test_top_redraws_on_a_terminal(tmp_path):
    async with SimMesh() as mesh, operator_api(tmp_path, mesh.registry_state) as api:
        traffic = asyncio.create_task(mesh.drive_for(30, rate=40))
        master, slave = pty.openpty()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gossamer.cli.main",
                "top",
                "--api",
                api.url,
                "--interval",
                "0.5",
                "-w",
                "10s",
            ],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env={**os.environ, "GOSSAMER_API_TOKEN": api.token, "COLUMNS": "120"},
            cwd=tmp_path,
            start_new_session=True,
        )
        os.close(slave)
        try:
            screen = await asyncio.to_thread(read_until, master, 3, 30.0)
            assert screen.count(TITLE) >= 3, screen[-2000:]
            assert b"catalog-default" in screen and b"rps" in screen
            assert proc.poll() is None  # still running, redrawing
            os.killpg(proc.pid, signal.SIGINT)
            assert await asyncio.to_thread(proc.wait, 10) == 130
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
            os.close(master)
            traffic.cancel()
            await asyncio.gather(traffic, return_exceptions=True)
