"""Sidecar HTTP/1.1 data path: two mTLS hops vs an haproxy pair vs direct, with the
sidecars' telemetry on and off.

Four paths to the same backend (haproxy answering itself, so it is equally fast for
all), driven by the same load generators in one run:
  direct:    load -> backend
  haproxy:   load -> haproxy A -> mutual TLS 1.3 -> haproxy B -> backend
  gossamer, metrics + tracing 1%:
             load -> sidecar web (outbound) -> mTLS -> sidecar catalog (inbound) -> backend,
             golden metrics recorded on both, OpenTelemetry tracing with the default
             parent-based 1% sampling, spans exported over OTLP/gRPC to a real receiver
  gossamer, metrics only:
             a second pair without tracing (no OTLP endpoint: the default)
  gossamer, telemetry off:
             a third pair with GOSSAMER_TELEMETRY=off
The sidecars are the real thing: `gossamer proxy` bootstrapped with join tokens by a
`gossamer control` process, configured over ADS (routes with retries, EDS endpoints).
Measured: maximum requests/s with `wrk` at 50 keep-alive connections; latency p50/p99
at a fixed 1,000 requests/s with bench/_loadgen.py (open loop, evenly spaced requests
over 20 keep-alive connections, latency charged from the due time when requests queue:
wrk2 is not packaged, and `hey -q` sends its workers' requests in synchronised bursts);
sidecar RSS idle and peak under the wrk load. Targets (issues 5 and 7): throughput >=
50% of haproxy's, added latency over direct <= 1 ms p50 and <= 5 ms p99, RSS <= 60 MB per
sidecar, telemetry costs <= 10% of the throughput.

Run: flock /tmp/gossamer-bench.lock ./dev bench proxy_http1 [--duration 5] [--rounds 4]
The machine is shared: numbers move with other work; run it twice when in doubt.
"""

from __future__ import annotations

import argparse
import statistics
import time

from bench._harness import (
    Latency,
    RssPeak,
    Throughput,
    fixed_rate,
    free_port,
    haproxy_backend,
    haproxy_pair,
    identities,
    print_table,
    rss_mb,
    workspace,
    wrk,
)
from bench._mesh import OtlpReceiverProcess, control_plane, xds_sidecar

SERVICE_PORT = 8080
ON = "gossamer, metrics + tracing 1%"
METRICS = "gossamer, metrics only"
OFF = "gossamer, telemetry off"


def services() -> list[dict[str, object]]:
    retries = {"attempts": 1, "on": ["connect-failure", "reset"]}
    http = [{"port": SERVICE_PORT, "protocol": "http"}]
    return [
        {"name": name, "ports": http, "retries": retries}
        for name in ("web", "catalog", "web-m", "catalog-m", "web-off", "catalog-off")
    ]


def _median(runs: list[tuple[Throughput, Latency]]) -> tuple[Throughput, Latency]:
    tps = sorted(runs, key=lambda r: r[0].rps)
    mid = tps[len(tps) // 2][0]
    tp = Throughput(mid.rps, mid.p50_ms, mid.p99_ms, sum(r[0].errors for r in runs))
    p50 = statistics.median(r[1].p50_ms for r in runs)
    p99 = statistics.median(r[1].p99_ms for r in runs)
    rate = statistics.median(r[1].rps for r in runs)
    return tp, Latency(rate, p50, p99, sum(r[1].errors for r in runs))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="./dev bench proxy_http1", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds (median)")
    args = parser.parse_args(argv)

    with workspace("gossamer-bench-") as (tmp, procs):
        ids = identities(tmp, ["web", "catalog"])
        backend = free_port()
        haproxy_backend(procs, backend)
        front, middle = free_port(), free_port()
        haproxy_pair(procs, ids, front, middle, backend)
        receiver = OtlpReceiverProcess(procs)
        cp = control_plane(procs, services())
        tracing = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}  # default sampler: 1%
        off = {"GOSSAMER_TELEMETRY": "off"}
        app = f"{SERVICE_PORT}:{backend}"
        sidecars = {
            "catalog": xds_sidecar(procs, cp, "catalog", app_port=app, env=tracing),
            "web": xds_sidecar(procs, cp, "web", env=tracing),
            "catalog-m": xds_sidecar(procs, cp, "catalog-m", app_port=app),
            "web-m": xds_sidecar(procs, cp, "web-m"),
            "catalog-off": xds_sidecar(procs, cp, "catalog-off", app_port=app, env=off),
            "web-off": xds_sidecar(procs, cp, "web-off", env=off),
        }
        pids = {name: sc.pid for name, sc in sidecars.items()}
        paths = {
            "direct": (f"http://127.0.0.1:{backend}/", None, ()),
            "haproxy": (f"http://127.0.0.1:{front}/", None, ()),
            ON: (f"http://127.0.0.1:{sidecars['web'].outbound}/", "catalog:8080",
                 ("web", "catalog")),
            METRICS: (f"http://127.0.0.1:{sidecars['web-m'].outbound}/", "catalog-m:8080",
                      ("web-m", "catalog-m")),
            OFF: (f"http://127.0.0.1:{sidecars['web-off'].outbound}/", "catalog-off:8080",
                  ("web-off", "catalog-off")),
        }  # fmt: skip
        # warm up connections and pools on every path
        for url, h, _ in paths.values():
            wrk(url, connections=args.connections, duration=1, headers=[f"Host: {h}"] if h else [])
        time.sleep(1)
        idle = {name: rss_mb(pid) for name, pid in pids.items()}

        # rounds interleave the paths so that a burst of other work on this shared
        # machine hits all of them; each figure is the median over the rounds
        samples: dict[str, list[tuple[Throughput, Latency]]] = {name: [] for name in paths}
        peaks = dict.fromkeys(pids, 0.0)
        for round_no in range(args.rounds):
            # the sidecar pairs alternate their order (ABBA), so a drift in the load of
            # this shared machine hits all; their cost is the median of per-round ratios
            pairs = [ON, METRICS, OFF] if round_no % 2 == 0 else [OFF, METRICS, ON]
            order = ["direct", "haproxy", *pairs]
            for name in order:
                url, h, watched = paths[name]
                headers = [f"Host: {h}"] if h else []
                with RssPeak([pids[w] for w in watched]) as watch:
                    tp = wrk(
                        url, connections=args.connections, duration=args.duration, headers=headers
                    )
                for w in watched:
                    peaks[w] = max(peaks[w], watch.peak[pids[w]])
                lat = fixed_rate(url, rate=args.rate, duration=args.duration, host=h)
                samples[name].append((tp, lat))
        spans = receiver.stop()

    results = {name: _median(runs) for name, runs in samples.items()}
    d_tp, d_lat = results["direct"]
    h_tp, _ = results["haproxy"]
    rows = []
    for name, (tp, lat) in results.items():
        rows.append(
            [
                name,
                f"{tp.rps:,.0f}",
                f"{tp.rps / h_tp.rps:.2f}",
                f"{tp.rps / d_tp.rps:.2f}",
                f"{lat.p50_ms:.2f}",
                f"{lat.p99_ms:.2f}",
                f"{lat.p50_ms - d_lat.p50_ms:+.2f}",
                f"{lat.p99_ms - d_lat.p99_ms:+.2f}",
                f"{lat.rps:,.0f}",
                tp.errors + lat.errors,
            ]
        )
    print_table(
        f"HTTP/1.1 two hops: max req/s with wrk at {args.connections} connections; latency at "
        f"{args.rate} req/s (open loop); median of {args.rounds} interleaved rounds of "
        f"{args.duration:g} s",
        ["path", "max req/s", "x haproxy", "x direct", "p50 ms", "p99 ms",
         "p50 +direct", "p99 +direct", "rate req/s", "errors"],
        rows,
    )  # fmt: skip
    print_table(
        "sidecar memory (RSS), xDS-driven sidecars",
        ["sidecar", "idle MB", "peak under load MB"],
        [[n, f"{idle[n]:.1f}", f"{peaks[n]:.1f}"] for n in pids],
    )
    on_tp, on_lat = results[ON]
    costs = {}
    for name in (ON, METRICS):
        paired = [a[0].rps / b[0].rps for a, b in zip(samples[name], samples[OFF], strict=True)]
        costs[name] = 1 - statistics.median(paired)
        print(
            f"\n{name} vs telemetry off: {costs[name]:+.1%} of the throughput (median of the "
            f"per-round ratios {', '.join(f'{r:.2f}' for r in paired)})"
        )
    loss = costs[ON]
    print(f"{spans} spans reached the OTLP receiver")
    checks = [
        ("throughput >= 50% of haproxy", on_tp.rps >= 0.5 * h_tp.rps),
        ("added p50 <= 1 ms", on_lat.p50_ms - d_lat.p50_ms <= 1.0),
        ("added p99 <= 5 ms", on_lat.p99_ms - d_lat.p99_ms <= 5.0),
        ("RSS <= 60 MB per sidecar", all(v <= 60 for v in peaks.values())),
        ("metrics + tracing 1% cost <= 10% throughput", loss <= 0.10),
    ]
    print_table("targets", ["target", "met"], [[t, "yes" if ok else "NO"] for t, ok in checks])
    return 0
