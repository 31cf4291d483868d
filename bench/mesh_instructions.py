"""Instructions per request on the two-hop mesh path, counted by valgrind (issue 7).

Throughput on this shared 2-core machine moves by several percent between identical
runs, so a cost of a few percent is hard to see in req/s (bench/mesh_telemetry.py needs
many rounds for it). This bench counts instead: each configuration's sidecar pair
(`load -> web (outbound) -> mTLS -> catalog (inbound) -> haproxy backend`, the xDS-driven
sidecars of the other benches) runs under callgrind; after a warm-up the counters are
zeroed, h2load sends a fixed number of HTTP/1.1 requests over 10 keep-alive
connections, and the counters are dumped. Instructions per request are the dumped
total over the requests; two runs of the same configuration agree within about 0.5%.

What it counts and what it does not:
- user-space instructions of both sidecar processes, every thread (the event loop and
  the span export thread); not the kernel's work (sockets, loopback TCP), not cache
  misses or stalls: a relative cost here is an upper bound of the throughput cost, not
  a prediction of it;
- under valgrind a sidecar runs ~50x slower, so at 1% sampling an export batch holds
  only a few spans and the per-batch work of an export is spread over fewer requests
  than in real time. The 100% row (batches of tens of spans: the export thread drains
  again as soon as an export returns) gives the cost of one sampled request; the "1%
  estimate" line adds 1% of it to the unsampled-tracing row. At 1% in real time a
  batch holds about a second of spans (~100), so the estimate is slightly high.

Configurations: telemetry off (GOSSAMER_TELEMETRY=off, the reference), metrics only (the
default), metrics + tracing with ratio 0 (every request takes the unsampled path:
decision and `traceparent` propagation), metrics + tracing 1% (the default sampler) and
metrics + tracing 100%, each exporting to a real OTLP receiver process.

Run: ./dev bench mesh_instructions [--requests 3000]  (needs valgrind and h2load)
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import time
from pathlib import Path

from bench._harness import (
    Procs,
    Sidecar,
    free_port,
    haproxy_backend,
    print_table,
    workspace,
)
from bench._mesh import ControlPlane, OtlpReceiverProcess, control_plane, xds_sidecar

SERVICE_PORT = 8080
OFF, METRICS, UNSAMPLED, TRACED, ALL = (
    "telemetry off",
    "metrics only (default)",
    "metrics + tracing, ratio 0",
    "metrics + tracing 1%",
    "metrics + tracing 100%",
)
CONFIGS = {OFF: "off", METRICS: "m", UNSAMPLED: "t0", TRACED: "t1", ALL: "t100"}
CONNECTIONS = 10


def _env(name: str, otlp: str) -> dict[str, str]:
    if name == OFF:
        return {"GOSSAMER_TELEMETRY": "off"}
    if name == METRICS:
        return {}
    ratio = {UNSAMPLED: "0", TRACED: "0.01", ALL: "1"}[name]
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp, "OTEL_TRACES_SAMPLER_ARG": ratio}


def _callgrind_sidecar(
    procs: Procs, cp: ControlPlane, service: str, out: Path, env: dict[str, str], app: str = ""
) -> Sidecar:
    callgrind = [
        "valgrind", "--tool=callgrind", "--dump-instr=no", "--compress-strings=no",
        f"--callgrind-out-file={out}/callgrind.{service}.%p",
    ]  # fmt: skip
    return xds_sidecar(
        procs, cp, service, app_port=app or None, env=env, wrapper=callgrind, ready_timeout=300
    )


def _load(web: Sidecar, catalog: Sidecar, requests: int) -> None:
    """`requests` HTTP/1.1 requests through the pair; all must succeed."""
    args = [
        "h2load", "--h1", "-n", str(requests), "-c", str(CONNECTIONS), "-t", "1",
        "-H", f":authority: {catalog.service}:{SERVICE_PORT}",
        f"http://127.0.0.1:{web.outbound}/",
    ]  # fmt: skip
    out = subprocess.run(args, capture_output=True, text=True, timeout=1800).stdout
    match = re.search(r"status codes: (\d+) 2xx", out)
    if match is None or int(match.group(1)) != requests:
        raise SystemExit(f"h2load: not every request got a 2xx answer:\n{out}")


def _control(command: str, pid: int) -> None:
    subprocess.run(["callgrind_control", command, str(pid)], capture_output=True, timeout=120)


def _dumped_total(path: Path, timeout: float = 120.0) -> int:
    """The instruction total of a dump callgrind writes (it may take a moment)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            for line in path.read_text(errors="replace").splitlines():
                if line.startswith("totals:"):
                    return int(line.split()[1])
        time.sleep(0.2)
    raise SystemExit(f"callgrind wrote no dump to {path}")


def measure(
    procs: Procs, cp: ControlPlane, name: str, otlp: str, backend: int, requests: int
) -> tuple[float, float]:
    """Instructions per request of (web, catalog) for one configuration."""
    tag = CONFIGS[name]
    out = procs.workdir
    env = _env(name, otlp)
    web = _callgrind_sidecar(procs, cp, f"web-{tag}", out, env)
    catalog = _callgrind_sidecar(
        procs, cp, f"catalog-{tag}", out, env, app=f"{SERVICE_PORT}:{backend}"
    )
    _load(web, catalog, 300)  # warm-up: connections, pools, caches
    for sidecar in (web, catalog):
        _control("--zero", sidecar.pid)
    _load(web, catalog, requests)
    counts = []
    for sidecar in (web, catalog):
        _control("--dump", sidecar.pid)
        counts.append(_dumped_total(out / f"callgrind.{sidecar.service}.{sidecar.pid}.1"))
    procs.stop_pids([web.pid, catalog.pid])
    return counts[0] / requests, counts[1] / requests


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench mesh_instructions", description=__doc__)
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args(argv)
    missing = [
        tool for tool in ("valgrind", "callgrind_control", "h2load") if not shutil.which(tool)
    ]
    if missing:
        print(f"bench mesh_instructions needs {', '.join(missing)} (./dev setup installs them)")
        return 2
    http = [{"port": SERVICE_PORT, "protocol": "http"}]
    services = [
        {"name": f"{side}-{tag}", "ports": http}
        for tag in CONFIGS.values()
        for side in ("web", "catalog")
    ]
    results: dict[str, tuple[float, float]] = {}
    with workspace("gossamer-bench-instructions-") as (_tmp, procs):
        backend = free_port()
        haproxy_backend(procs, backend)
        receiver = OtlpReceiverProcess(procs)
        cp = control_plane(procs, services)
        for name in CONFIGS:
            results[name] = measure(procs, cp, name, receiver.endpoint, backend, args.requests)
            print(f"  {name}: {sum(results[name]):,.0f} instructions per request", flush=True)
        spans = receiver.stop()

    ref = sum(results[OFF])
    rows = [
        [
            name,
            f"{web:,.0f}",
            f"{catalog:,.0f}",
            f"{web + catalog:,.0f}",
            f"{(web + catalog) / ref - 1:+.1%}",
        ]
        for name, (web, catalog) in results.items()
    ]
    print_table(
        f"user-space instructions per request, web + catalog sidecars, {args.requests} "
        f"requests over {CONNECTIONS} connections (callgrind)",
        ["configuration", "web", "catalog", "both", "vs off"],
        rows,
    )  # fmt: skip
    unsampled, everything = sum(results[UNSAMPLED]), sum(results[ALL])
    estimate = unsampled + 0.01 * (everything - unsampled)
    print(
        f"\none sampled request costs {everything - unsampled:,.0f} instructions more than an "
        f"unsampled one (100% row - ratio 0 row)"
    )
    print(
        f"1% estimate with real-time batch sizes: {estimate:,.0f} per request, "
        f"{estimate / ref - 1:+.1%} vs off (measured 1% row: {sum(results[TRACED]) / ref - 1:+.1%})"
    )
    print(f"{spans} spans reached the OTLP receiver")
    return 0
