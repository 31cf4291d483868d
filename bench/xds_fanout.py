"""xDS fan-out: time for one endpoint change to reach N sidecar ADS streams, and memory.

Starts `gossamer control` as a subprocess (mesh.yaml with --services services of three
endpoints each), then, from this one process, opens ADS streams over real gRPC
(grpc.aio, --channels channels) that behave like sidecars: node metadata naming a
service, CDS and LDS wildcards, EDS for every cluster, RDS `outbound`, every response
ACKed. Each change moves one endpoint of svc-0 in mesh.yaml and sends SIGHUP; the
latency of a stream is from the SIGHUP until that stream holds an EDS response with
the new endpoint. Reference (same run): the same change with a single stream.
Memory: control-plane RSS with all streams connected minus RSS before any stream.

    ./dev bench xds_fanout [--streams 1000] [--channels 10] [--changes 5] [--protocol sotw|delta]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench._harness import cpu_seconds
from gossamer.contract import xds

CHANGED_CLUSTER = "outbound|8080||svc-0.default"


def mesh_text(port: int, services: int, change: int) -> str:
    lines = [
        "trust_domain: gossamer.local",
        "control:",
        f"  insecure_xds_listen: 127.0.0.1:{port}",
        "  xds_listen: 127.0.0.1:0",
        "  bootstrap_listen: 127.0.0.1:0",
        "  api_listen: 127.0.0.1:0",
        "services:",
    ]
    for s in range(services):
        lines += [
            f"  - name: svc-{s}",
            "    ports: [{port: 8080, protocol: http}]",
            "    endpoints:",
        ]
        for e in range(3):
            port_value = 20000 + change if (s == 0 and e == 0) else 10000 + s * 10 + e
            lines.append(
                f"      - {{address: 10.0.{s // 250}.{s % 250 + 1}, port: {port_value}, zone: z{e}}}"
            )
    return "\n".join(lines) + "\n"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def count_connections(port: int) -> int:
    """Established TCP connections to the control plane's port (from /proc)."""
    local = f":{port:04X}"
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1].endswith(local) and fields[3] == "01":  # 01: ESTABLISHED
                count += 1
    return count


def changed_port_in(cla_any: Any) -> int | None:
    cla = endpoint_pb2.ClusterLoadAssignment()
    cla.ParseFromString(cla_any.value)
    if cla.cluster_name != CHANGED_CLUSTER:
        return None
    ports = [
        e.endpoint.address.socket_address.port_value
        for loc in cla.endpoints
        for e in loc.lb_endpoints
    ]
    return int(max(ports))


class Sidecar:
    """One simulated sidecar stream (SotW or delta), ACKing everything."""

    def __init__(self, index: int, channel: grpc.aio.Channel, services: int, delta: bool) -> None:
        self.index = index
        self.delta = delta
        self.service = f"svc-{index % services}"
        self.clusters = [f"outbound|8080||svc-{s}.default" for s in range(services)]
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
        self.call = stub.DeltaAggregatedResources() if delta else stub.StreamAggregatedResources()
        self.synced: set[str] = set()
        self.seen_port: dict[int, float] = {}
        self.synced_event = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def _node(self) -> Any:
        node = base_pb2.Node(id=f"bench-{self.index}")
        node.metadata.CopyFrom(struct_pb2.Struct())
        node.metadata.update({"GOSSAMER_SERVICE": self.service})
        return node

    async def start(self) -> None:
        subscriptions = [
            (xds.CLUSTER, []),
            (xds.ENDPOINT, self.clusters),
            (xds.LISTENER, []),
            (xds.ROUTE, [xds.OUTBOUND_ROUTE]),
        ]
        for i, (type_url, wanted) in enumerate(subscriptions):
            if self.delta:
                request: Any = discovery_pb2.DeltaDiscoveryRequest(
                    type_url=type_url, resource_names_subscribe=wanted
                )
            else:
                request = discovery_pb2.DiscoveryRequest(type_url=type_url, resource_names=wanted)
            if i == 0:
                request.node.CopyFrom(self._node())
            await self.call.write(request)
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        names_by_type = {xds.ENDPOINT: self.clusters, xds.ROUTE: [xds.OUTBOUND_ROUTE]}
        while True:
            response = await self.call.read()
            if response is grpc.aio.EOF:
                return
            now = time.time()
            type_url = response.type_url
            if type_url == xds.ENDPOINT:
                for item in response.resources:
                    port = changed_port_in(item.resource if self.delta else item)
                    if port is not None and port not in self.seen_port:
                        self.seen_port[port] = now
            if self.delta:
                ack: Any = discovery_pb2.DeltaDiscoveryRequest(
                    type_url=type_url, response_nonce=response.nonce
                )
            else:
                ack = discovery_pb2.DiscoveryRequest(
                    type_url=type_url,
                    version_info=response.version_info,
                    resource_names=names_by_type.get(type_url, []),
                    response_nonce=response.nonce,
                )
            await self.call.write(ack)
            self.synced.add(type_url)
            if len(self.synced) == 4:
                self.synced_event.set()

    async def close(self) -> None:
        self.call.cancel()
        if self.task is not None:
            self.task.cancel()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


async def wait_all(sidecars: list[Sidecar], port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while any(port not in s.seen_port for s in sidecars):
        if time.monotonic() > deadline:
            missing = sum(1 for s in sidecars if port not in s.seen_port)
            raise TimeoutError(f"{missing} streams never saw change to port {port}")
        await asyncio.sleep(0.005)


async def measure_changes(
    proc: subprocess.Popen[bytes],
    config: Path,
    args: argparse.Namespace,
    xds_port: int,
    sidecars: list[Sidecar],
    first_change: int,
    count: int,
) -> tuple[list[list[float]], float]:
    rounds = []
    cpu_before = cpu_seconds(proc.pid)
    for change in range(first_change, first_change + count):
        config.write_text(mesh_text(xds_port, args.services, change))
        started = time.time()
        proc.send_signal(signal.SIGHUP)
        await wait_all(sidecars, 20000 + change, 60)
        rounds.append([s.seen_port[20000 + change] - started for s in sidecars])
        await asyncio.sleep(0.3)  # let the ACKs drain before the next change
    return rounds, (cpu_seconds(proc.pid) - cpu_before) / count


def wait_serving(target: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            if proc.poll() is not None:
                raise RuntimeError("the control plane exited during start-up")
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5).status == 1:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("control plane not serving")
            time.sleep(0.05)


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        xds_port = s.getsockname()[1]
    config = workdir / "mesh.yaml"
    config.write_text(mesh_text(xds_port, args.services, 0))
    log = open(workdir / "control.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gossamer.cli.main",
            "control",
            "--config",
            str(config),
            "--reload-interval",
            "3600",
            "--log-level",
            "warning",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    channels: list[grpc.aio.Channel] = []
    sidecars: list[Sidecar] = []
    try:
        target = f"127.0.0.1:{xds_port}"
        wait_serving(target, proc)
        await asyncio.sleep(0.5)
        idle_rss = rss_kib(proc.pid)
        # a local subchannel pool gives each channel its own TCP connection
        opts = [
            ("grpc.max_receive_message_length", 64 << 20),
            ("grpc.use_local_subchannel_pool", 1),
        ]
        channels = [grpc.aio.insecure_channel(target, options=opts) for _ in range(args.channels)]
        delta = args.protocol == "delta"
        # reference: one stream
        sidecars.append(Sidecar(0, channels[0], args.services, delta))
        await sidecars[0].start()
        await asyncio.wait_for(sidecars[0].synced_event.wait(), 30)
        reference, _ = await measure_changes(proc, config, args, xds_port, sidecars, 1, 3)
        # the fleet
        connect_started = time.monotonic()
        for i in range(1, args.streams):
            sidecar = Sidecar(i, channels[i % args.channels], args.services, delta)
            sidecars.append(sidecar)
            await sidecar.start()
        await asyncio.wait_for(asyncio.gather(*(s.synced_event.wait() for s in sidecars)), 120)
        connect_seconds = time.monotonic() - connect_started
        await asyncio.sleep(1.0)
        loaded_rss = rss_kib(proc.pid)
        connections = count_connections(xds_port)
        rounds, cpu_per_change = await measure_changes(
            proc, config, args, xds_port, sidecars, 10, args.changes
        )
        return {
            "reference": [x for r in reference for x in r],
            "rounds": rounds,
            "idle_rss": idle_rss,
            "loaded_rss": loaded_rss,
            "connect_seconds": connect_seconds,
            "connections": connections,
            "cpu_per_change": cpu_per_change,
        }
    finally:
        for sidecar in sidecars:
            await sidecar.close()
        for channel in channels:
            await channel.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="xds_fanout", description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--channels", type=int, default=10)
    parser.add_argument("--changes", type=int, default=5)
    parser.add_argument("--services", type=int, default=10)
    parser.add_argument("--protocol", choices=("sotw", "delta"), default="sotw")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="xds-fanout-") as tmp:
        result = asyncio.run(run(args, Path(tmp)))
    ref = result["reference"]
    all_latencies = [x for r in result["rounds"] for x in r]
    ref_p99 = percentile(ref, 99)
    print(
        f"xDS fan-out ({args.protocol}): {args.streams} streams over {args.channels} channels, "
        f"{args.services} services, {args.changes} endpoint changes"
    )
    print(
        f"connected and synced all streams in {result['connect_seconds']:.2f}s "
        f"({result['connections']} TCP connections to the control plane)"
    )
    print()
    header = f"{'measurement':32} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9} {'p99 / ref':>10}"
    print(header)
    print("-" * len(header))

    def row(label: str, values: list[float]) -> None:
        p99 = percentile(values, 99)
        print(
            f"{label:32} {percentile(values, 50) * 1e3:9.1f} {p99 * 1e3:9.1f} "
            f"{max(values) * 1e3:9.1f} {p99 / ref_p99:10.1f}"
        )

    row("reference: 1 stream (3 changes)", ref)
    for i, latencies in enumerate(result["rounds"], 1):
        row(f"change {i}: {args.streams} streams", latencies)
    row(f"all changes: {args.streams} streams", all_latencies)
    per_stream = (result["loaded_rss"] - result["idle_rss"]) / max(1, args.streams)
    print()
    print(
        f"control-plane RSS idle {result['idle_rss'] / 1024:.1f} MiB, with {args.streams} streams "
        f"{result['loaded_rss'] / 1024:.1f} MiB: {per_stream:.1f} KiB per stream"
    )
    print(f"control-plane CPU per change: {result['cpu_per_change'] * 1e3:.0f} ms")
    p99 = percentile(all_latencies, 99)
    ok = p99 <= 1.0 and per_stream <= 1024
    print(
        f"targets: p99 <= 1000 ms ({'met' if p99 <= 1.0 else 'MISSED'}), "
        f"<= 1 MiB per stream ({'met' if per_stream <= 1024 else 'MISSED'})"
    )
    return 0 if ok else 1
