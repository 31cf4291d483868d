"""A proxyless gRPC client driven by gRPC's own xDS resolver (no Gossamer code here).

    GRPC_XDS_BOOTSTRAP=bootstrap.json python -m tests.helpers.xds_echo_client xds:///echo:50051

Calls `/echo.Echo/Who` in a loop (every `--interval` seconds) until killed, printing
one JSON line per call: the time, the answering server's name, or the error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import grpc


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("target")
    parser.add_argument("--interval", type=float, default=0.01)
    args = parser.parse_args(argv)
    channel = grpc.insecure_channel(args.target)
    who = channel.unary_unary("/echo.Echo/Who")
    while True:
        started = time.time()
        try:
            line = {"t": started, "server": who(b"", timeout=5).decode()}
        except grpc.RpcError as exc:
            line = {"t": started, "error": f"{exc.code()}: {exc.details()}"}
        print(json.dumps(line), flush=True)
        time.sleep(args.interval)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
