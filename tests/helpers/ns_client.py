"""Requests through a sidecar's outbound port, run inside a node's namespace.

    python -m tests.helpers.ns_client --port P --host catalog:8080 [--path /] [--count N]
        [--until FILE] [--interval S] [--timed]

Sends GET requests one after another over one keep-alive connection (a new one after
an error) and prints one JSON line per request: [status, body] (status 0 and the error
for a request that got no answer). `--count N` sends N; `--until FILE` keeps sending
until FILE exists (at most 20,000 requests). `--timed` adds each request's seconds,
from sending to the whole body (or the error), and when it started (Unix time):
[status, body, seconds, started].
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import time


def timing(timed: bool, started: float) -> list[float]:
    """[seconds, when it started (Unix time)] with --timed, else nothing."""
    if not timed:
        return []
    seconds = time.monotonic() - started
    return [round(seconds, 4), round(time.time() - seconds, 3)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--path", default="/")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--until")
    parser.add_argument("--interval", type=float, default=0.0)
    parser.add_argument("--timed", action="store_true")
    args = parser.parse_args()
    conn: http.client.HTTPConnection | None = None
    sent = 0
    limit = 20_000 if args.until else args.count
    while sent < limit:
        if args.until and os.path.exists(args.until):
            break
        sent += 1
        started = time.monotonic()
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=10)
            conn.request("GET", args.path, headers={"Host": args.host})
            response = conn.getresponse()
            body = response.read().decode(errors="replace").strip()
            print(json.dumps([response.status, body, *timing(args.timed, started)]), flush=True)
        except (OSError, http.client.HTTPException) as exc:
            print(
                json.dumps([0, f"{type(exc).__name__}: {exc}", *timing(args.timed, started)]),
                flush=True,
            )
            if conn is not None:
                conn.close()
            conn = None
        if args.interval:
            time.sleep(args.interval)
    sys.exit(0)


if __name__ == "__main__":
    main()
