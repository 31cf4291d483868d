"""Kill a process with SIGKILL while it writes the embedded store, again and again:
the file must always load, and hold at least every write that was acknowledged.

The child writes in a tight loop (each write: write temp, fsync, rename, fsync dir) and
prints each revision after the write returned. The parent kills it at random moments,
then reads the file as the next start would, and starts the next child on the same
file (so every round also exercises a restart after a crash).
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gossamer.discovery import snapshot_file
from gossamer.discovery.embedded import EmbeddedStore
from tests.conftest import REPO

pytestmark = pytest.mark.e2e

CHILD = """
import asyncio, sys
from pathlib import Path
from gossamer.discovery.embedded import EmbeddedStore
from gossamer.discovery.model import Endpoint
from gossamer.discovery.model import Service
from gossamer.discovery.model import ServicePort

async def main(path):
    store = EmbeddedStore(Path(path))
    await store.start()
    print("started", store.revision, flush=True)
    i = 0
    while True:
        svc = Service(f"svc-{i % 150}", ports=(ServicePort(1000 + i % 5000),))
        await store.put_service(svc)
        rev = await store.put_endpoint(
            Endpoint(svc.key, f"i-{i % 7}", "10.0.0.1", 1 + i % 60000, zone="z" * (i % 50))
        )
        print(rev, flush=True)
        i += 1

asyncio.run(main(sys.argv[1]))
"""

ROUNDS = 12


def test_sigkill_mid_write_never_corrupts_the_file(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    rng = random.Random(1234)
    durable = 0
    strays = 0
    for _ in range(ROUNDS):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        try:
            assert child.stdout is not None
            started = child.stdout.readline()
            assert started.startswith("started"), child.stderr.read() if child.stderr else ""
            # the restart saw everything acknowledged before the previous crash
            assert int(started.split()[1]) >= durable
            acked = [int(child.stdout.readline()) for _ in range(rng.randint(1, 40))]
            time.sleep(rng.uniform(0, 0.01))
            child.send_signal(signal.SIGKILL)
            rest, _ = child.communicate(timeout=10)
            acked += [int(line) for line in rest.split()]
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        assert child.returncode == -signal.SIGKILL
        strays += len(list(tmp_path.glob(".registry-*.tmp")))
        snap = snapshot_file.read(path)  # loads: complete old or complete new file
        assert snap is not None
        assert snap.revision >= max(acked)
        assert snap.services and snap.endpoints
        durable = max(durable, *acked)
    print(f"{ROUNDS} kills, {strays} left a temporary file behind (killed mid-write)")


async def test_the_store_starts_after_the_crashes(tmp_path: Path) -> None:
    # a stray temporary from a crash plus a complete file: start cleans and loads
    path = tmp_path / "registry.json"
    snapshot_file.write_atomic(path, snapshot_file.encode(9, [], []))
    (tmp_path / ".registry-dead.tmp").write_bytes(b'{"format": 1, "revis')
    store = EmbeddedStore(path)
    await store.start()
    assert store.revision == 9
    assert not list(tmp_path.glob("*.tmp"))
    await store.close()
