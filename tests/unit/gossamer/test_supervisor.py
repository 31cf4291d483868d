"""The supervisor stops the children it is given, and then the rest (real processes)."""

from __future__ import annotations

import sys
from pathlib import Path

from gossamer.supervisor import Supervisor

SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]


def test_stop_some_children_first_then_the_rest(tmp_path: Path):
    supervisor = Supervisor(tmp_path)
    store = supervisor.start("store", SLEEP)
    users = [supervisor.start(f"user-{n}", SLEEP) for n in range(2)]
    try:
        supervisor.stop(5.0, users)
        assert [u.running for u in users] == [False, False]
        assert store.running
        supervisor.stop(5.0)
        assert not store.running
    finally:
        supervisor.stop(1.0)
