"""Shared pieces for data-path benchmarks: processes, certificates, load generators.

Not a benchmark itself (the leading underscore keeps it out of `./dev bench`). Later
benchmarks (HTTP/2, gRPC, ...) reuse it: start a backend, sidecars or haproxy pairs on
free loopback ports, drive them with `wrk` (maximum throughput) and `hey` (latency at a
fixed rate), sample the RSS of the processes under test, print a table.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HAPROXY_GLOBAL = """global
  maxconn 4000
  nbthread 1
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")


def wait_http(url: str, timeout: float = 20.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as r:
            if r.status == 200:
                return
        time.sleep(0.05)
    raise TimeoutError(f"{url} not ready")


class Procs:
    """Processes started for one run; all stopped (with their groups) at the end."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, args: Sequence[str], name: str) -> subprocess.Popen[bytes]:
        return self.start_env(args, name, {})

    def start_env(
        self, args: Sequence[str], name: str, env: dict[str, str]
    ) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            list(args),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            start_new_session=True,
            env={**os.environ, **env},
        )
        self.procs.append(proc)
        return proc

    def stop_pids(self, pids: Sequence[int]) -> None:
        """Stop some of the run's processes (SIGTERM to their groups) and wait for them."""
        chosen = [p for p in self.procs if p.pid in pids]
        self.procs = [p for p in self.procs if p.pid not in pids]
        self._stop(chosen)

    def stop(self) -> None:
        self._stop(self.procs)

    @staticmethod
    def _stop(procs: Sequence[subprocess.Popen[bytes]]) -> None:
        for proc in reversed(procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)


@contextlib.contextmanager
def workspace(prefix: str) -> Iterator[tuple[Path, Procs]]:
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        procs = Procs(Path(tmp))
        try:
            yield Path(tmp), procs
        finally:
            procs.stop()


@dataclass
class Identity:
    spiffe_id: str
    chain: Path
    key: Path
    bundle: Path
    combined: Path  # chain + key, as haproxy wants it


def identities(
    workdir: Path, services: Sequence[str], trust_domain: str = "gossamer.local"
) -> dict[str, Identity]:
    """Leaf certificates from a fresh mesh CA (gossamer.certs)."""
    from gossamer.certs.ca import CertificateAuthority
    from gossamer.certs.keys import build_csr, generate_key, key_to_pem
    from gossamer.certs.spiffe import SpiffeId

    ca = CertificateAuthority.init(workdir / "ca", trust_domain)
    out = {}
    for svc in services:
        sid = SpiffeId(trust_domain, "default", svc).uri
        key = generate_key()
        issued = ca.issue(build_csr(key, sid), sid, 3600.0)
        paths = {}
        for name, data in (
            ("chain", issued.chain_pem),
            ("key", key_to_pem(key)),
            ("bundle", ca.trust_bundle_pem()),
            ("combined", issued.chain_pem + key_to_pem(key)),
        ):
            path = workdir / f"{svc}-{name}.pem"
            path.write_bytes(data)
            paths[name] = path
        out[svc] = Identity(sid, **paths)
    return out


def haproxy_backend(procs: Procs, port: int, body: str = "hello") -> None:
    """haproxy answering every request itself: a fast backend equal for every path."""
    cfg = procs.workdir / f"backend-{port}.cfg"
    cfg.write_text(
        HAPROXY_GLOBAL + f"frontend fe\n  bind 127.0.0.1:{port}\n"
        f'  http-request return status 200 content-type text/plain string "{body}"\n'
    )
    procs.start(["haproxy", "-f", str(cfg)], f"backend-{port}")
    wait_port(port)


def haproxy_pair(
    procs: Procs, ids: dict[str, Identity], front: int, middle: int, backend: int
) -> list[int]:
    """Two haproxy processes: plain HTTP in, mutual TLS 1.3 between them, plain out."""
    a, b = ids["web"], ids["catalog"]
    cfg_a = procs.workdir / "haproxy-a.cfg"
    cfg_a.write_text(
        HAPROXY_GLOBAL + f"frontend fe\n  bind 127.0.0.1:{front}\n  default_backend be\n"
        "backend be\n  http-reuse always\n"
        f"  server s 127.0.0.1:{middle} ssl crt {a.combined} ca-file {a.bundle} verify required "
        "ssl-min-ver TLSv1.3\n"
    )
    cfg_b = procs.workdir / "haproxy-b.cfg"
    cfg_b.write_text(
        HAPROXY_GLOBAL + f"frontend fe\n  bind 127.0.0.1:{middle} ssl crt {b.combined} "
        f"ca-file {b.bundle} verify required ssl-min-ver TLSv1.3\n  default_backend be\n"
        f"backend be\n  http-reuse always\n  server s 127.0.0.1:{backend}\n"
    )
    pids = [procs.start(["haproxy", "-f", str(c)], c.stem).pid for c in (cfg_b, cfg_a)]
    wait_port(middle)
    wait_port(front)
    return pids


@dataclass
class Sidecar:
    service: str
    inbound: int
    outbound: int
    admin: int
    pid: int


def sidecar(procs: Procs, ident: Identity, service: str, config: dict[str, object]) -> Sidecar:
    """A `gossamer proxy --static-config` process (the sidecar under test)."""
    inbound, outbound, admin = free_port(), free_port(), free_port()
    path = procs.workdir / f"{service}.json"
    path.write_text(json.dumps(config))
    args = [
        sys.executable, "-m", "gossamer.cli.main", "proxy", "--service", service,
        "--static-config", str(path), "--cert", str(ident.chain), "--key", str(ident.key),
        "--bundle", str(ident.bundle), "--inbound-port", str(inbound),
        "--outbound-port", str(outbound), "--admin-port", str(admin),
        "--metrics-port", "0",  # the admin port (127.0.0.1) serves /metrics too
    ]  # fmt: skip
    proc = procs.start(args, f"sidecar-{service}")
    wait_http(f"http://127.0.0.1:{admin}/ready")
    return Sidecar(service, inbound, outbound, admin, proc.pid)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class RssPeak:
    """Peak RSS of some processes while a block runs."""

    def __init__(self, pids: Sequence[int]) -> None:
        self.pids = list(pids)
        self.peak = {p: rss_mb(p) for p in self.pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            for p in self.pids:
                self.peak[p] = max(self.peak[p], rss_mb(p))

    def __enter__(self) -> RssPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Throughput:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    if not m:
        return float("nan")
    value, unit = float(m.group(1)), m.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def wrk(
    url: str,
    *,
    connections: int = 50,
    duration: float = 10.0,
    threads: int = 2,
    headers: Sequence[str] = (),
) -> Throughput:
    """Maximum throughput with wrk (closed loop, `connections` keep-alive connections)."""
    args = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--latency", url]
    for h in headers:
        args += ["-H", h]
    out = subprocess.run(args, capture_output=True, text=True, timeout=duration + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    errors = 0
    for m in re.finditer(
        r"(?:Non-2xx or 3xx responses|Socket errors:.*?timeout)\s*:?\s*(\d+)", out
    ):
        errors += int(m.group(1))
    return Throughput(rps, p50, p99, errors)


@dataclass
class Latency:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    raw: str = field(repr=False, default="")


def hey_fixed_rate(
    url: str,
    *,
    rate: int = 1000,
    workers: int = 20,
    duration: float = 10.0,
    host: str | None = None,
) -> Latency:
    """Latency at a fixed rate: `hey -q` paces each of `workers` keep-alive clients at
    rate/workers requests per second (closed loop per worker; a worker that falls
    behind does not catch up, so this is not corrected for coordinated omission)."""
    args = ["hey", "-z", f"{duration:g}s", "-c", str(workers), "-q", str(rate // workers)]
    if host:
        args += ["-host", host]
    args.append(url)
    out = subprocess.run(args, capture_output=True, text=True, timeout=duration + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = float(re.search(r"50%\s+in\s+([\d.]+)", out).group(1)) * 1000  # type: ignore[union-attr]
    p99 = float(re.search(r"99%\s+in\s+([\d.]+)", out).group(1)) * 1000  # type: ignore[union-attr]
    codes = re.findall(r"\[(\d{3})\]\s+(\d+) responses", out)
    errors = sum(int(n) for code, n in codes if code != "200")
    errors += sum(int(n) for n in re.findall(r"\[(\d+)\]\s+(?:Get|Post)\b", out))
    return Latency(rps, p50, p99, errors, out)


def fixed_rate(
    url: str,
    *,
    rate: int = 1000,
    connections: int = 20,
    duration: float = 10.0,
    host: str | None = None,
) -> Latency:
    """Latency at a fixed rate with the open-loop generator in bench/_loadgen.py."""
    m = re.match(r"http://127\.0\.0\.1:(\d+)(/.*)?$", url)
    assert m, url
    args = [sys.executable, "-m", "bench._loadgen", "--port", m.group(1), "--path", m.group(2) or "/",
            "--rate", str(rate), "--duration", f"{duration:g}", "--connections", str(connections)]  # fmt: skip
    if host:
        args += ["--host-header", host]
    out = subprocess.run(args, capture_output=True, text=True, timeout=duration + 60, cwd=REPO)
    data = json.loads(out.stdout)
    errors = int(data["errors"]) + int(data["sent"]) - int(data["completed"])
    return Latency(data["rate"], data["p50_ms"], data["p99_ms"], errors, out.stdout)


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    widths = [max(len(str(c)), *(len(str(r[i])) for r in rows)) for i, c in enumerate(columns)]
    print(f"\n{title}")
    print("  ".join(str(c).ljust(w) for c, w in zip(columns, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)))


def timed(fn: Callable[[], object]) -> float:
    start = time.monotonic()
    fn()
    return time.monotonic() - start
