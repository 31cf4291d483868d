"""Is the local app ready? A TCP connect, or an HTTP GET of a probe path, repeated.

The result feeds `/ready` (and, with the control plane, the health the sidecar
registers). A probe is healthy after `success_threshold` consecutive successes and
unhealthy after `failure_threshold` consecutive failures, like Kubernetes probes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    port: int
    path: str | None = None  # None: TCP connect
    address: str = "127.0.0.1"
    interval: float = 1.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3


async def probe_once(spec: ProbeSpec) -> str | None:
    """None when the app answered as expected, else why not."""
    try:
        async with asyncio.timeout(spec.timeout):
            reader, writer = await asyncio.open_connection(spec.address, spec.port)
            try:
                if spec.path is None:
                    return None
                writer.write(
                    f"GET {spec.path} HTTP/1.1\r\nHost: {spec.address}:{spec.port}\r\n"
                    "User-Agent: gossamer-probe\r\nConnection: close\r\n\r\n".encode()
                )
                line = await reader.readline()
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except TimeoutError:
        return "timed out"
    except OSError as exc:
        return exc.strerror or str(exc)
    parts = line.split()
    if len(parts) >= 2 and parts[1].isdigit() and 200 <= int(parts[1]) < 400:
        return None
    return f"answered {line.decode('latin-1').strip() or 'nothing'}"


class AppProbe:
    """`on_change(ready)` is called when readiness flips (the registration reports it)."""

    def __init__(self, spec: ProbeSpec | None) -> None:
        self.spec = spec
        self.on_change: Callable[[bool], None] | None = None
        self.ready = spec is None  # nothing to probe: ready
        self.last_error: str | None = None if spec is None else "not probed yet"
        self._successes = 0
        self._failures = 0
        self._task: asyncio.Task[None] | None = None

    def record(self, error: str | None) -> None:
        before = self.ready
        self._record(error)
        if self.ready != before and self.on_change is not None:
            self.on_change(self.ready)

    def _record(self, error: str | None) -> None:
        assert self.spec is not None
        if error is None:
            self._successes += 1
            self._failures = 0
            if self._successes >= self.spec.success_threshold:
                self.ready = True
                self.last_error = None
        else:
            self._failures += 1
            self._successes = 0
            self.last_error = error
            if self._failures >= self.spec.failure_threshold or not self.ready:
                self.ready = False

    async def _run(self) -> None:
        assert self.spec is not None
        while True:
            self.record(await probe_once(self.spec))
            # probe fast until the app is up, then at the normal interval
            await asyncio.sleep(self.spec.interval if self.ready else min(0.2, self.spec.interval))

    def start(self) -> None:
        if self.spec is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
