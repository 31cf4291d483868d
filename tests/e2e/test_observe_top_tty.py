"""`gossamer top` on a terminal redraws live until interrupted (a real pseudo-terminal),
on the real mesh of tests/helpers/observed_mesh.py: real control plane, real sidecars."""

from __future__ import annotations

import os
import pty
import re
import signal
import subprocess
import time

import pytest

from tests.helpers.observed_mesh import CLI_DIR, RATE, observed_mesh
from tests.helpers.procs import gossamer_cmd

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


def test_top_redraws_on_a_terminal(tmp_path):
    with observed_mesh(tmp_path) as om:
        master, slave = pty.openpty()
        proc = subprocess.Popen(
            [*gossamer_cmd("top", "--interval", "0.5", "-w", "10s"), "--api", om.api_url],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env={**os.environ, "GOSSAMER_API_TOKEN": om.admin_token, "COLUMNS": "140"},
            cwd=CLI_DIR,
            start_new_session=True,
        )
        os.close(slave)
        try:
            # the first screens may come before two scrapes exist; wait for 8 redraws
            screen = read_until(master, 8, 60.0)
            assert screen.count(TITLE) >= 8, screen[-2000:]
            last = screen[screen.rindex(TITLE) :].decode(errors="replace")
            for dst in ("web", "catalog", "inventory"):
                assert f"{dst}.default:8080/default" in last, last
            # the route to inventory, with its rate in requests per second
            row = next(line for line in last.splitlines() if "inventory.default:8080" in line)
            rates = [float(x) for x in re.findall(r"(\d+(?:\.\d+)?)\s*rps", row)]
            assert rates and rates[0] == pytest.approx(RATE, rel=0.25), row
            assert proc.poll() is None  # still running, redrawing
            os.killpg(proc.pid, signal.SIGINT)
            assert proc.wait(10) == 130
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
            os.close(master)
