"""Benchmark pieces for HTTP/2 and gRPC (not a benchmark itself).

`python -m bench._grpc PORT` runs a gRPC backend (grpc.aio, generic handler, no
generated code): `/bench.Echo/Unary` answers the request message. `h2load_max` drives
gRPC unary calls with h2load (real gRPC framing, `te: trailers`, h2c prior knowledge)
at full speed; `h2load_rate` at a fixed total rate (evenly spaced, from one connection), with latency percentiles computed
from h2load's per-request log (h2load itself prints only mean and deviation).
`grpc_check` makes one call with a grpcio client and checks the answer, so the load is
known to be gRPC calls that succeed, not just HTTP/2 200s.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

METHOD = "/bench.Echo/Unary"
MESSAGE = b"x" * 64
FRAME = b"\x00" + len(MESSAGE).to_bytes(4, "big") + MESSAGE


@dataclass
class H2Result:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def _h2load(args: list[str]) -> tuple[float, int, str]:
    out = subprocess.run(["h2load", *args], capture_output=True, text=True, timeout=300)
    text = out.stdout
    m = re.search(r"finished in [\d.]+\w*, ([\d.]+) req/s", text)
    r = re.search(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
        r"(\d+) errored",
        text,
    )
    s = re.search(r"status codes: (\d+) 2xx", text)
    if m is None or r is None:
        raise RuntimeError(f"h2load failed: {out.stderr or text}")
    ok = int(s.group(1)) if s else 0
    errors = int(r.group(5)) + int(r.group(6)) + max(0, int(r.group(3)) - ok)
    return float(m.group(1)), errors, text


def _common(url: str, authority: str | None, body: Path) -> list[str]:
    args = [url, "-d", str(body), "-H", "content-type: application/grpc", "-H", "te: trailers"]
    if authority:
        args += ["-H", f":authority: {authority}"]
    return args


def h2load_max(
    url: str, authority: str | None, *, duration: float, clients: int = 10, streams: int = 10
) -> H2Result:
    with tempfile.TemporaryDirectory() as tmp:
        body = Path(tmp) / "frame"
        body.write_bytes(FRAME)
        rps, errors, _ = _h2load(
            [*_common(url, authority, body), "-c", str(clients), "-m", str(streams),
             "-D", f"{duration:g}", "--warm-up-time", "1"]
        )  # fmt: skip
    return H2Result(rps, 0.0, 0.0, errors)


def h2load_rate(
    url: str, authority: str | None, *, rate: int, duration: float, clients: int = 1
) -> H2Result:
    """Open loop: h2load issues each client's requests on a timer (1/rate apart: one
    client, so they are evenly spaced; several clients fire in step, in bursts)."""
    with tempfile.TemporaryDirectory() as tmp:
        body = Path(tmp) / "frame"
        body.write_bytes(FRAME)
        log = Path(tmp) / "log"
        n = int(rate * duration)
        rps, errors, _ = _h2load(
            [*_common(url, authority, body), "-c", str(clients), "-m", "32",
             "-n", str(n), f"--rps={rate / clients:g}", f"--log-file={log}"]
        )  # fmt: skip
        times = sorted(
            int(line.split("\t")[2]) / 1000.0
            for line in log.read_text().splitlines()
            if line.count("\t") >= 2
        )
    if not times:
        raise RuntimeError("h2load logged no requests")
    p50 = times[len(times) // 2]
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    return H2Result(rps, p50, p99, errors)


def grpc_check(target: str, authority: str | None) -> None:
    """One unary call with grpcio (in a child process: the bench does not import grpc)."""
    code = (
        "import grpc,sys\n"
        f"opts=[('grpc.default_authority',{authority!r})] if {authority!r} else []\n"
        f"ch=grpc.insecure_channel({target!r},options=opts)\n"
        f"r=ch.unary_unary({METHOD!r})(b'ping',timeout=10)\n"
        "assert r==b'ping',r\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def main() -> None:
    import asyncio

    import grpc

    def unary(request: bytes, context: object) -> bytes:
        return request

    async def serve(port: int) -> None:
        server = grpc.aio.server()
        handler = grpc.method_handlers_generic_handler(
            "bench.Echo",
            {"Unary": grpc.unary_unary_rpc_method_handler(unary)},
        )
        server.add_generic_rpc_handlers((handler,))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    asyncio.run(serve(int(sys.argv[1])))


if __name__ == "__main__":
    main()
