"""Tiny real gRPC servers for tests: each answers `/echo.Echo/Who` with its name and
records when it was called."""

from __future__ import annotations

import threading
import time
from concurrent import futures
from typing import Any

import grpc


class EchoServer:
    def __init__(self, name: str, host: str = "127.0.0.1") -> None:
        self.name = name
        self.calls: list[float] = []
        self._lock = threading.Lock()
        handler = grpc.method_handlers_generic_handler(
            "echo.Echo", {"Who": grpc.unary_unary_rpc_method_handler(self._who)}
        )
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port(f"{host}:0")
        self.server.start()

    def _who(self, request: bytes, context: Any) -> bytes:
        with self._lock:
            self.calls.append(time.time())
        return self.name.encode()

    def count(self, since: float = 0.0) -> int:
        with self._lock:
            return sum(1 for t in self.calls if t >= since)

    def last_call(self) -> float | None:
        with self._lock:
            return self.calls[-1] if self.calls else None

    def stop(self) -> None:
        self.server.stop(grace=0.2).wait()
