"""A steady HTTP load from threads with keep-alive connections (for e2e tests)."""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    statuses: Counter[int] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def total(self) -> int:
        return sum(self.statuses.values()) + len(self.errors)


class Load:
    """`threads` clients sending GET `path` with `Host: host` to 127.0.0.1:`port`
    back to back (or paced to `rate` per client per second) until `stop()`."""

    def __init__(
        self, port: int, host: str, path: str = "/", *, threads: int = 4, rate: float | None = None
    ) -> None:
        self.port = port
        self.host = host
        self.path = path
        self.rate = rate
        self.result = LoadResult()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(threads)]

    def _client(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        interval = 1.0 / self.rate if self.rate else 0.0
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                conn.request("GET", self.path, headers={"Host": self.host})
                resp = conn.getresponse()
                resp.read()
                with self.result.lock:
                    self.result.statuses[resp.status] += 1
            except (OSError, http.client.HTTPException) as exc:
                with self.result.lock:
                    self.result.errors.append(repr(exc))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            if interval:
                next_at += interval
                time.sleep(max(0.0, next_at - time.monotonic()))
        conn.close()

    def start(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> LoadResult:
        self._stop.set()
        for t in self._threads:
            t.join(15)
        return self.result
