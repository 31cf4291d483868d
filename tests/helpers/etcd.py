"""Start real etcd servers for tests: one member, or a cluster of three.

Uses Debian's `etcd` binary (`/usr/bin/etcd`, package `etcd-server`, version 3.4) on
free loopback ports, with data and logs in a temporary directory. Every process is
started with a parent-death signal (`setpriv --pdeathsig KILL`), so it dies with the
test process even if pytest is killed, and `EtcdCluster.close()` (called by the context managers and fixtures below)
kills whatever is still running.

Usage from a test::

    # fixtures, registered for every test by tests/conftest.py (pytest_plugins)

    async def test_x(etcd_server):                 # one member
        store = open_store(etcd_server.store_url("/t1"), data_dir=tmp_path)

    def test_y(etcd_cluster):                      # three members
        etcd_cluster.kill(0); ...; etcd_cluster.restart(0)

or without pytest: `with start_etcd(tmp_dir, members=3) as cluster: ...`.
`cluster.endpoints` is `["127.0.0.1:PORT", ...]`; `cluster.store_url(prefix)` is the
`etcd://...` URL for `gossamer.discovery.stores.open_store`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers.procs import free_port

__all__ = ["EtcdCluster", "EtcdMember", "free_port", "start_etcd"]

ETCD_BINARY = os.environ.get("GOSSAMER_ETCD_BINARY", "/usr/bin/etcd")
START_TIMEOUT = 30.0
# setpriv (util-linux) sets PR_SET_PDEATHSIG, then execs etcd: if the test process dies,
# so does etcd. The signal follows the *thread* that started it, so start members from
# the main thread (pytest fixtures do).
_SETPRIV = shutil.which("setpriv")


@dataclass
class EtcdMember:
    """One etcd process; `kill()` and `restart()` keep its data directory."""

    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log_path: Path
    initial_cluster: str = ""
    process: subprocess.Popen[bytes] | None = None
    started_once: bool = False

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    def command(self) -> list[str]:
        client = f"http://127.0.0.1:{self.client_port}"
        wrapper = [_SETPRIV, "--pdeathsig", "KILL", "--"] if _SETPRIV else []
        return [
            *wrapper,
            ETCD_BINARY,
            f"--name={self.name}",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={self.peer_url}",
            f"--initial-advertise-peer-urls={self.peer_url}",
            f"--initial-cluster={self.initial_cluster}",
            "--initial-cluster-state=new",
            "--initial-cluster-token=gossamer-test",
            # fast elections so a killed leader is replaced in about a second
            "--heartbeat-interval=50",
            "--election-timeout=500",
            "--logger=zap",
            "--log-level=warn",
        ]

    def start(self) -> None:
        if self.running:
            return
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        finally:
            log.close()
        self.started_once = True

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the member (a crash); its data directory stays for `restart()`."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def healthy(self) -> bool:
        """True once the member answers /health with a leader elected."""
        try:
            url = f"http://127.0.0.1:{self.client_port}/health"
            with urllib.request.urlopen(url, timeout=1) as response:
                return bool(json.loads(response.read()).get("health") == "true")
        except (OSError, ValueError):
            return False

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class EtcdCluster:
    """A running etcd cluster of one or more members."""

    members: list[EtcdMember]
    root: Path
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    def store_url(self, prefix: str = "/gossamer") -> str:
        return f"etcd://{','.join(self.endpoints)}{prefix}"

    def wait_healthy(
        self, timeout: float = START_TIMEOUT, members: list[int] | None = None
    ) -> None:
        """Poll /health of the running members (or `members`) until all say healthy."""
        indexes = (
            members
            if members is not None
            else [i for i, m in enumerate(self.members) if m.process is not None]
        )
        deadline = time.monotonic() + timeout
        while True:
            pending = [i for i in indexes if not self.members[i].healthy()]
            if not pending:
                return
            for i in pending:
                m = self.members[i]
                if m.process is not None and m.process.poll() is not None:
                    raise RuntimeError(f"etcd {m.name} exited:\n{m.log_tail()}")
            if time.monotonic() > deadline:
                tails = "\n".join(self.members[i].log_tail() for i in pending)
                raise TimeoutError(f"etcd members {pending} not healthy in {timeout}s:\n{tails}")
            time.sleep(0.05)

    def kill(self, index: int) -> None:
        self.members[index].kill()

    def restart(self, index: int, *, wait: bool = True) -> None:
        self.members[index].start()
        if wait:
            self.wait_healthy(members=[index])

    def leader_index(self) -> int | None:
        """Which member is the raft leader now (None if there is none)."""
        for i, m in enumerate(self.members):
            if not m.running:
                continue
            try:
                url = f"http://127.0.0.1:{m.client_port}/v3/maintenance/status"
                req = urllib.request.Request(url, data=b"{}", method="POST")
                with urllib.request.urlopen(req, timeout=1) as response:
                    status = json.loads(response.read())
            except (OSError, ValueError):
                continue
            header = status.get("header", {})
            if status.get("leader") and status.get("leader") == header.get("member_id"):
                return i
        return None

    def close(self) -> None:
        for m in self.members:
            m.kill()


def _launch(root: Path, size: int) -> EtcdCluster:
    members = [
        EtcdMember(
            name=f"m{i}",
            client_port=free_port(),
            peer_port=free_port(),
            data_dir=root / f"m{i}",
            log_path=root / f"m{i}.log",
        )
        for i in range(size)
    ]
    initial = ",".join(f"{m.name}={m.peer_url}" for m in members)
    for m in members:
        m.initial_cluster = initial
        m.start()
    return EtcdCluster(members, root)


@contextlib.contextmanager
def start_etcd(root: Path | None = None, *, members: int = 1) -> Iterator[EtcdCluster]:
    """Start `members` etcd processes as one new cluster; kill them all on exit.

    A port taken between choosing and binding it makes a member exit at once; the
    whole cluster is then started again on new ports (up to three attempts).
    """
    with contextlib.ExitStack() as stack:
        if root is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="etcd-")))
        last: Exception | None = None
        for attempt in range(3):
            attempt_dir = root / f"try{attempt}"
            attempt_dir.mkdir(parents=True, exist_ok=True)
            cluster = _launch(attempt_dir, members)
            try:
                cluster.wait_healthy()
            except (RuntimeError, TimeoutError) as exc:
                cluster.close()
                last = exc
                continue
            try:
                yield cluster
            finally:
                cluster.close()
            return
        raise RuntimeError(f"could not start etcd: {last}")


@pytest.fixture
def etcd_server(tmp_path: Path) -> Iterator[EtcdCluster]:
    """A single-member etcd for one test."""
    with start_etcd(tmp_path / "etcd", members=1) as cluster:
        yield cluster


@pytest.fixture
def etcd_cluster(tmp_path: Path) -> Iterator[EtcdCluster]:
    """A three-member etcd cluster for one test."""
    with start_etcd(tmp_path / "etcd", members=3) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def shared_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    """One single-member etcd for a whole test module (give each test its own prefix)."""
    with start_etcd(tmp_path_factory.mktemp("etcd"), members=1) as cluster:
        yield cluster
