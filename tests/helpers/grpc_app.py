"""A small gRPC app (grpcio, generic handlers: no generated code) for mesh tests.

    python -m tests.helpers.grpc_app --port P --name NAME [--unavailable] [--max-streams N]

`--max-streams N` makes the server take at most N concurrent streams per connection
(its SETTINGS_MAX_CONCURRENT_STREAMS).

Methods of service `test.Echo` (messages are raw bytes):
  Unary         -> b"NAME:" + request; trailing metadata x-instance: NAME,
                   x-trailer: done; initial metadata x-served-by: NAME
  ServerStream  -> request b"<n>": n messages b"NAME:<i>", then trailer x-count: n
  Bidi          -> initial metadata x-served-by: NAME, each request message back
                   upper-cased, then trailer x-instance
  Fail          -> request b"<code>:<details>": aborts with that status and details,
                   trailing metadata x-why: test
  Deadline      -> the time remaining of the call as seen by the app (b"%.3f" or
                   b"none"); request b"sleep:<s>" first sleeps that long
  Flaky         -> UNAVAILABLE (trailers-only) when started with --unavailable, else
                   as Unary
"""

from __future__ import annotations

import argparse
import time
from concurrent import futures
from typing import Any

import grpc

SERVICE = "test.Echo"


def _ident(b: bytes) -> bytes:
    return b


def build(name: str, unavailable: bool) -> grpc.GenericRpcHandler:
    def unary(request: bytes, context: Any) -> bytes:
        context.send_initial_metadata((("x-served-by", name),))
        context.set_trailing_metadata((("x-instance", name), ("x-trailer", "done")))
        return name.encode() + b":" + request

    def server_stream(request: bytes, context: Any) -> Any:
        n = int(request)
        for i in range(n):
            yield b"%s:%d" % (name.encode(), i)
        context.set_trailing_metadata((("x-count", str(n)),))

    def bidi(requests: Any, context: Any) -> Any:
        context.send_initial_metadata((("x-served-by", name),))
        for message in requests:
            yield message.upper()
        context.set_trailing_metadata((("x-instance", name),))

    def fail(request: bytes, context: Any) -> bytes:
        code, _, details = request.decode().partition(":")
        context.set_trailing_metadata((("x-why", "test"),))
        context.abort(grpc.StatusCode[code], details)
        return b""

    def deadline(request: bytes, context: Any) -> bytes:
        if request.startswith(b"sleep:"):
            time.sleep(float(request[6:]))
        left = context.time_remaining()
        return b"none" if left is None or left > 1e6 else b"%.3f" % left

    def flaky(request: bytes, context: Any) -> bytes:
        if unavailable:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"{name} is unavailable")
        return unary(request, context)

    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary, _ident, _ident),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream, _ident, _ident),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi, _ident, _ident),
        "Fail": grpc.unary_unary_rpc_method_handler(fail, _ident, _ident),
        "Deadline": grpc.unary_unary_rpc_method_handler(deadline, _ident, _ident),
        "Flaky": grpc.unary_unary_rpc_method_handler(flaky, _ident, _ident),
    }
    return grpc.method_handlers_generic_handler(SERVICE, handlers)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", default="app")
    parser.add_argument("--unavailable", action="store_true")
    parser.add_argument("--max-streams", type=int, default=0)
    args = parser.parse_args()
    options = [("grpc.max_concurrent_streams", args.max_streams)] if args.max_streams else []
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), options=options)
    server.add_generic_rpc_handlers((build(args.name, args.unavailable),))
    server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    server.wait_for_termination()


if __name__ == "__main__":
    main()
