"""A small HTTP/TCP app for sidecar tests, run as a process.

    python -m tests.helpers.echo_app --port P --name NAME [--tcp]
        [--upstream URL --upstream-host HOST] [--fail-every N]

HTTP (threaded, keep-alive, HTTP/1.1):
  GET  /             -> "NAME\\n", header x-served-by: NAME
  GET  /headers      -> the request headers as JSON
  GET  /status/<n>   -> status n
  GET  /slow/<ms>    -> waits, then answers
  GET  /big/<bytes>  -> that many bytes, chunked, generated as it goes
  POST /echo         -> the body back (Content-Length or chunked request bodies)
  POST /count        -> reads the body in 64 KiB pieces: "<bytes> <sha256>"
  POST /expect-reject-> with Expect: 100-continue, 417 without reading the body
  GET  /ws           -> with Upgrade: 101, then echoes raw bytes upper-cased until EOF
  GET  /hits         -> how many requests this app served
  GET  /healthz      -> 200, or 503 after /control/health/fail (until /control/health/ok)
  GET  /control/fail-half/on|off -> from then on "/" answers every other request 500
  GET  /control/fail-next/<n> -> the next counted request is answered with status n
  --fail-every N: "/" answers every N-th request 500 (N=5: a success rate of 80%)
  --delay-ms N: "/" waits N ms before it answers (a known latency)
  --upstream URL --upstream-host HOST: "/" first calls GET URL/ with Host: HOST (its
      sidecar's outbound port, so a chain of apps makes real mesh hops), passing the
      trace headers on, and answers 200 "NAME <- <upstream status>" whatever the
      upstream said: a failure below is absorbed, only the failing service's own
      success rate drops
  (/healthz and the /control/... switches are not counted in /hits; /hits itself is)
TCP (--tcp): echoes every byte; when the client half-closes, sends "bye <n>\\n" (n =
bytes received) and closes, proving the half-close passed through.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import socket
import socketserver
import threading
import time
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HITS = 0
LOCK = threading.Lock()
FAIL_HALF = False
HEALTHY = True
SERVED = 0  # requests to "/" (every other one fails when FAIL_HALF)
FAIL_NEXT = 0  # a status the next counted request gets (0: none)
FAIL_EVERY = 0  # with N > 0, every N-th request to "/" fails
DELAY = 0.0  # seconds "/" waits before answering
UPSTREAM: tuple[str, int, str] | None = None  # (host, port, Host header) "/" calls first
TRACE_HEADERS = ("traceparent", "tracestate", "b3", "x-b3-traceid", "x-b3-spanid",
                 "x-b3-parentspanid", "x-b3-sampled", "x-request-id")  # fmt: skip
_CONNECTIONS = threading.local()  # one keep-alive connection upstream per thread


def call_upstream(headers: dict[str, str]) -> int:
    """GET / of the upstream (through the sidecar), on this thread's connection; the
    status, or 599 when the connection failed."""
    assert UPSTREAM is not None
    host, port, authority = UPSTREAM
    for _ in range(2):  # a kept-alive connection the sidecar closed: once more, fresh
        conn = getattr(_CONNECTIONS, "conn", None)
        if conn is None:
            conn = _CONNECTIONS.conn = HTTPConnection(host, port, timeout=10)
        try:
            conn.request("GET", "/", headers={"Host": authority, **headers})
            response = conn.getresponse()
            response.read()
            if response.will_close:
                conn.close()
                _CONNECTIONS.conn = None
            return response.status
        except OSError:
            conn.close()
            _CONNECTIONS.conn = None
    return 599


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "echo-app"
    name = "app"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _count(self) -> None:
        global HITS
        with LOCK:
            HITS += 1

    def _send(
        self,
        status: int,
        body: bytes,
        ctype: str = "text/plain",
        extra: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        self.send_header("x-served-by", self.name)
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _body_chunks(self):
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return
                left = size
                while left:
                    data = self.rfile.read(min(left, 65536))
                    if not data:
                        return
                    left -= len(data)
                    yield data
                self.rfile.readline()
        else:
            left = int(self.headers.get("content-length", "0"))
            while left:
                data = self.rfile.read(min(left, 65536))
                if not data:
                    return
                left -= len(data)
                yield data

    def handle_expect_100(self) -> bool:
        if self.path == "/expect-reject":
            self._count()
            self._send(417, b"not now\n", extra={"connection": "close"})
            self.close_connection = True
            return False
        return super().handle_expect_100()

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        global FAIL_HALF, FAIL_NEXT, HEALTHY, SERVED
        path = self.path.partition("?")[0]  # a query string is ignored
        if path.startswith("/control/"):
            if path.startswith("/control/fail-half/"):
                FAIL_HALF = path.endswith("/on")
            elif path.startswith("/control/fail-next/"):
                FAIL_NEXT = int(path.rsplit("/", 1)[1])
            elif path.startswith("/control/health/"):
                HEALTHY = path.endswith("/ok")
            self._send(200, b"ok\n")
            return
        if path == "/healthz":  # not counted either: /hits counts the traffic
            self._send(200 if HEALTHY else 503, b"healthz\n")
            return
        self._count()
        with LOCK:
            failing, FAIL_NEXT = FAIL_NEXT, 0
        if failing:
            self._send(failing, b"failing once\n")
            return
        if path == "/":
            if DELAY:
                time.sleep(DELAY)
            with LOCK:
                SERVED += 1
                fail = (FAIL_HALF and SERVED % 2 == 0) or (
                    FAIL_EVERY > 0 and SERVED % FAIL_EVERY == 0
                )
            if fail:
                self._send(500, f"{self.name} failing\n".encode())
            elif UPSTREAM is not None:
                trace = {k: v for k, v in self.headers.items() if k.lower() in TRACE_HEADERS}
                status = call_upstream(trace)
                self._send(200, f"{self.name} <- {status}\n".encode())
            else:
                self._send(200, f"{self.name}\n".encode())

        elif path == "/hits":
            self._send(200, f"{HITS}\n".encode())
        elif path == "/headers":
            self._send(200, json.dumps(dict(self.headers.items())).encode(), "application/json")
        elif path.startswith("/status/"):
            self._send(int(path.rsplit("/", 1)[1]), b"status\n")
        elif path == "/forged-502":  # an app claiming a sidecar's "never reached the app"
            self._send(502, b"forged\n", extra={"x-gossamer-error": "connect-failure"})
        elif path.startswith("/slow/"):
            time.sleep(int(path.rsplit("/", 1)[1]) / 1000)
            self._send(200, f"{self.name} slow\n".encode())
        elif path.startswith("/big/"):
            total = int(path.rsplit("/", 1)[1])
            self.send_response(200)
            self.send_header("transfer-encoding", "chunked")
            self.send_header("x-served-by", self.name)
            self.end_headers()
            block = b"x" * 65536
            left = total
            while left:
                data = block[: min(left, len(block))]
                self.wfile.write(b"%x\r\n%b\r\n" % (len(data), data))
                left -= len(data)
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/ws" and self.headers.get("upgrade"):
            self.send_response(101)
            self.send_header("connection", "upgrade")
            self.send_header("upgrade", self.headers["upgrade"])
            self.end_headers()
            self.wfile.flush()
            sock = self.connection
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                sock.sendall(data.upper())
            self.close_connection = True
        else:
            self._send(404, b"no such path\n")

    def do_POST(self) -> None:
        self._count()
        if self.path == "/echo":
            body = b"".join(self._body_chunks())
            self._send(200, body, self.headers.get("content-type", "application/octet-stream"))
        elif self.path in ("/count", "/expect-reject"):
            digest = hashlib.sha256()
            n = 0
            for data in self._body_chunks():
                n += len(data)
                digest.update(data)
            self._send(200, f"{n} {digest.hexdigest()}\n".encode())
        else:
            for _ in self._body_chunks():
                pass
            self._send(404, b"no such path\n")

    do_PUT = do_POST


class TcpEcho(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        n = 0
        while True:
            data = sock.recv(65536)
            if not data:
                break
            n += len(data)
            sock.sendall(data)
        sock.sendall(f"bye {n}\n".encode())
        sock.shutdown(socket.SHUT_WR)


class TcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--name", default="app")
    parser.add_argument("--tcp", action="store_true")
    parser.add_argument("--fail-every", type=int, default=0)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--upstream", default=None, help="http://HOST:PORT")
    parser.add_argument("--upstream-host", default=None, help="the Host header upstream")
    args = parser.parse_args()
    global DELAY, FAIL_EVERY, UPSTREAM
    FAIL_EVERY = args.fail_every
    DELAY = args.delay_ms / 1000
    if args.upstream:
        address = args.upstream.removeprefix("http://").rstrip("/")
        host, _, port = address.rpartition(":")
        UPSTREAM = (host, int(port), args.upstream_host or address)
    if args.tcp:
        TcpServer((args.host, args.port), TcpEcho).serve_forever()
        return
    Handler.name = args.name
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
