"""What telemetry costs the two-hop mesh path: metrics + tracing 1% vs both off (issue 7).

Four sidecar pairs in one run, each `load -> web (outbound) -> mTLS -> catalog (inbound)
-> backend`, the same xDS-configured sidecars as bench/proxy_http1.py:
  metrics + tracing 1%:  golden metrics on both sidecars, OpenTelemetry tracing with the
                         default parent-based 1% sampling, spans exported over OTLP/gRPC
                         to a real receiver process
  metrics only:          the default configuration (no OTLP endpoint)
  telemetry off:         GOSSAMER_TELEMETRY=off, the reference
  telemetry off (A/A):   a second, identical telemetry-off pair: how far two equal pairs
                         differ in this run is the noise floor of every ratio
Each round starts fresh sidecar pairs for every configuration (in a rotating order),
warms them up, then runs wrk (50 keep-alive connections) against each pair in turn and
once more in the mirrored order (A B C D D C B A, the order rotating from round to
round), so a drift of this shared machine's speed during a round hits all pairs alike;
a pair's figure for the round is the mean of its two runs.
Fresh processes each round matter: two identically configured pairs that live for the
whole run can differ by several percent in every round, by where they happen to land
(CPU, memory), and that bias would stick to one configuration.
The reference of a round is the geometric mean of its two telemetry-off pairs. A pair's
cost is 1 - the median over the rounds of its req/s divided by the reference. The
sidecars' CPU time per request (user + system, both sidecars, from /proc) is printed
too, as a second view. The A/A line gives the median ratio between the two off pairs:
what "no difference" looks like in this run.

Target (issue 7): metrics + tracing 1% cost <= 10% of the throughput.

Run: flock /tmp/gossamer-bench.lock ./dev bench mesh_telemetry [--rounds 16] [--duration 2]
"""

from __future__ import annotations

import argparse
import math
import statistics

from bench._harness import (
    Sidecar,
    cpu_seconds,
    free_port,
    haproxy_backend,
    print_table,
    workspace,
    wrk,
)
from bench._mesh import OtlpReceiverProcess, control_plane, pair_services, round_order, xds_sidecar

SERVICE_PORT = 8080
TRACED = "metrics + tracing 1%"
METRICS = "metrics only (default)"
OFF = "telemetry off"
OFF_AA = "telemetry off (A/A)"
PAIRS = {TRACED: "on", METRICS: "m", OFF: "off", OFF_AA: "aa"}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench mesh_telemetry", description=__doc__)
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--duration", type=int, default=2, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args(argv)

    with workspace("gossamer-bench-telemetry-") as (_tmp, procs):
        backend = free_port()
        haproxy_backend(procs, backend)
        receiver = OtlpReceiverProcess(procs)
        cp = control_plane(procs, pair_services(args.rounds, list(PAIRS.values()), SERVICE_PORT))
        envs = {
            TRACED: {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint},  # default sampler: 1%
            METRICS: {},
            OFF: {"GOSSAMER_TELEMETRY": "off"},
            OFF_AA: {"GOSSAMER_TELEMETRY": "off"},
        }
        app = f"{SERVICE_PORT}:{backend}"

        def start_pairs(round_no: int) -> dict[str, tuple[Sidecar, Sidecar]]:
            pairs = {}
            for name in round_order(round_no + 1, list(PAIRS)):  # start order rotates too
                tag = PAIRS[name]
                pairs[name] = (
                    xds_sidecar(procs, cp, f"web-{tag}{round_no}", env=envs[name]),
                    xds_sidecar(
                        procs, cp, f"catalog-{tag}{round_no}", app_port=app, env=envs[name]
                    ),
                )
            return pairs

        def run(pair: tuple[Sidecar, Sidecar], duration: float) -> tuple[float, float, int]:
            web, catalog = pair
            before = cpu_seconds(web.pid) + cpu_seconds(catalog.pid)
            tp = wrk(
                f"http://127.0.0.1:{web.outbound}/",
                connections=args.connections,
                duration=duration,
                headers=[f"Host: {catalog.service}:{SERVICE_PORT}"],
            )
            used = cpu_seconds(web.pid) + cpu_seconds(catalog.pid) - before
            return tp.rps, used / max(tp.rps * duration, 1) * 1e6, tp.errors

        rps: dict[str, list[float]] = {name: [] for name in PAIRS}
        cpu: dict[str, list[float]] = {name: [] for name in PAIRS}
        errors = 0
        receiver_cpu = 0.0  # the OTLP receiver's CPU time while the traced pair runs
        for round_no in range(args.rounds):
            pairs = start_pairs(round_no)
            for pair in pairs.values():  # warm up connections and pools
                run(pair, 1)
            order = round_order(round_no, list(PAIRS))
            runs: dict[str, list[tuple[float, float]]] = {name: [] for name in PAIRS}
            for name in order + order[::-1]:
                before = cpu_seconds(receiver.proc.pid)
                r, us, err = run(pairs[name], args.duration)
                if name == TRACED:
                    receiver_cpu += cpu_seconds(receiver.proc.pid) - before
                runs[name].append((r, us))
                errors += err
            for name, both in runs.items():
                rps[name].append(statistics.mean(r for r, _ in both))
                cpu[name].append(statistics.mean(us for _, us in both))
            procs.stop_pids([s.pid for pair in pairs.values() for s in pair])
        spans = receiver.stop()

    ref_rps = [math.sqrt(a * b) for a, b in zip(rps[OFF], rps[OFF_AA], strict=True)]
    ref_cpu = [math.sqrt(a * b) for a, b in zip(cpu[OFF], cpu[OFF_AA], strict=True)]
    rows = []
    costs: dict[str, float] = {}
    per_round: dict[str, list[float]] = {}
    for name in PAIRS:
        ratios = [a / b for a, b in zip(rps[name], ref_rps, strict=True)]
        per_round[name] = ratios
        ranked = sorted(ratios)
        quart = len(ranked) // 4
        costs[name] = 1 - statistics.median(ratios)
        cpu_ratio = statistics.median(a / b for a, b in zip(cpu[name], ref_cpu, strict=True))
        rows.append(
            [
                name,
                f"{statistics.median(rps[name]):,.0f}",
                f"{statistics.median(ratios):.3f}",
                f"{ranked[quart]:.2f}-{ranked[-1 - quart]:.2f}",
                f"{costs[name]:+.1%}",
                f"{statistics.median(cpu[name]):.1f}",
                f"{cpu_ratio - 1:+.1%}",
            ]
        )
    print_table(
        f"two-hop mesh path, wrk at {args.connections} connections; {args.rounds} rounds of "
        f"fresh pairs, each pair 2 x {args.duration:g} s per round (medians over rounds)",
        ["pair", "req/s", "x off", "x off, middle half", "throughput cost",
         "sidecar CPU us/req", "CPU vs off"],
        rows,
    )  # fmt: skip
    for name in (TRACED, METRICS):
        print(f"\n{name} / off, per round: {' '.join(f'{r:.2f}' for r in per_round[name])}")
    aa = [a / b for a, b in zip(rps[OFF_AA], rps[OFF], strict=True)]
    print(f"off (A/A) / off, per round: {' '.join(f'{r:.2f}' for r in aa)}")
    print(f"\n{spans} spans reached the OTLP receiver; {errors} wrk errors")
    print(
        "the OTLP receiver (a Python gRPC server on the same 2 cores) used "
        f"{receiver_cpu / (args.rounds * 2 * args.duration):.1%} of a core while the traced "
        "pair ran"
    )
    print(
        "noise floor: the two identical telemetry-off pairs differ by "
        f"{abs(statistics.median(aa) - 1):.1%} (median of the rounds) in this run"
    )
    met = costs[TRACED] <= 0.10
    print_table(
        "target",
        ["target", "met"],
        [["metrics + tracing 1% cost <= 10% throughput", "yes" if met else "NO"]],
    )
    return 0
