"""A small open-loop HTTP/1.1 load generator at a fixed rate (wrk2 is not packaged).

    python -m bench._loadgen --port P [--host-header H] [--path /] --rate 1000 --duration 10

Requests are due at evenly spaced times (rate per second), independent of responses
(open loop). Each due request goes out on an idle keep-alive connection of a pool
(`--connections`); latency runs from the moment it is written, or, when every
connection was busy, from its due time, so a slow server is charged for the queueing
it causes (no coordinated omission). The generator's own timer lateness is not
charged. Prints one JSON line: sent, completed, errors, achieved rate, p50/p90/p99/max
in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import deque

import httptools
import uvloop


class Conn(asyncio.Protocol):
    def __init__(self, gen: Generator) -> None:
        self.gen = gen
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.started = 0.0
        self.status = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.gen.failed(self)

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_message_complete(self) -> None:
        self.gen.done(self, time.perf_counter() - self.started, self.status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.gen.failed(self)

    def send(self, started: float) -> None:
        self.started = started
        assert self.transport is not None
        self.transport.write(self.gen.request)


class Generator:
    def __init__(self, port: int, host_header: str, path: str) -> None:
        self.port = port
        self.request = f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\n\r\n".encode()
        self.idle: list[Conn] = []
        self.waiting: deque[float] = deque()  # due times of requests without a connection
        self.latencies: list[float] = []
        self.sent = 0
        self.errors = 0
        self.broken: set[Conn] = set()

    async def connect(self, n: int) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(n):
            _, conn = await loop.create_connection(lambda: Conn(self), "127.0.0.1", self.port)
            self.idle.append(conn)

    def due(self, due_time: float) -> None:
        self.sent += 1
        if self.idle:
            self.idle.pop().send(time.perf_counter())
        else:
            self.waiting.append(due_time)

    def done(self, conn: Conn, latency: float, status: int) -> None:
        self.latencies.append(latency)
        if status != 200:
            self.errors += 1
        if self.waiting:
            conn.send(self.waiting.popleft())
        else:
            self.idle.append(conn)

    def failed(self, conn: Conn) -> None:
        if conn not in self.broken:
            self.broken.add(conn)
            self.errors += 1


async def run(args: argparse.Namespace) -> dict[str, float]:
    gen = Generator(args.port, args.host_header or f"127.0.0.1:{args.port}", args.path)
    await gen.connect(args.connections)
    interval = 1.0 / args.rate
    start = time.perf_counter() + 0.05
    total = int(args.duration * args.rate)
    i = 0
    while i < total:
        now = time.perf_counter()
        while i < total and start + i * interval <= now:
            gen.due(start + i * interval)
            i += 1
        await asyncio.sleep(max(0.0, start + i * interval - time.perf_counter()))
    end = time.perf_counter() + 5.0
    while len(gen.latencies) + gen.errors < gen.sent and time.perf_counter() < end:
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - start
    lat = sorted(gen.latencies)

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")

    return {
        "sent": gen.sent,
        "completed": len(lat),
        "errors": gen.errors,
        "rate": len(lat) / elapsed,
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "max_ms": lat[-1] * 1000 if lat else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host-header")
    parser.add_argument("--path", default="/")
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=20)
    args = parser.parse_args()
    print(json.dumps(uvloop.run(run(args))))


if __name__ == "__main__":
    main()
