"""Counting lost requests in the container demo: the load generator's own counters and a
steady load of the test's own from the host (GETs to web's published port)."""

from __future__ import annotations

import http.client
import re
import threading
import time
from types import TracebackType
from urllib.parse import urlsplit

_REPORT = re.compile(r"loadgen: sent=(\d+) ok=(\d+) failed=(\d+)")


def loadgen_counts(logs: str) -> tuple[int, int] | None:
    """(sent, failed) of the demo load generator's last report (its counters are
    cumulative since it started), or None before its first report."""
    reports = _REPORT.findall(logs)
    if not reports:
        return None
    sent, _ok, failed = reports[-1]
    return int(sent), int(failed)


def loadgen_reports(logs: str) -> int:
    """How many reports the demo load generator has written (one every 10 s)."""
    return len(_REPORT.findall(logs))


class HostLoad:
    """GETs at a fixed rate from a thread, each on a new connection (so every request
    crosses the published port afresh); records anything but a 200 as a failure."""

    def __init__(self, url: str, *, rate: float, timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self._path = parts.path or "/"
        self._interval = 1.0 / rate
        self._timeout = timeout
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.sent = 0
        self.failed = 0
        self.errors: list[str] = []

    def _one(self) -> None:
        conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        try:
            conn.request("GET", self._path)
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}: {body[:120]!r}")
        except Exception as exc:  # every failure counts
            self.failed += 1
            self.errors.append(f"{time.strftime('%H:%M:%S')} {type(exc).__name__}: {exc}")
        finally:
            conn.close()
            self.sent += 1

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            self._one()
            next_at += self._interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def __enter__(self) -> HostLoad:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
