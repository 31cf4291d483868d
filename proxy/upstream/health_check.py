"""Active health checking of the endpoints of the clusters a sidecar uses.

Theory of operation (Envoy's active health checking, HealthCheck in the Cluster):
- Each host of a checked cluster is probed every `interval` (x a random 0.9-1.1, and a
  random first delay within the first interval, so that sidecars and hosts do not
  probe in step). A probe opens a connection the way real traffic does (mutual TLS to
  the peer's inbound port, identity verified); an HTTP check sends `GET path` (over
  HTTP/2 with ALPN h2 when the check says so, as on HTTP/2 and gRPC ports) and passes
  when the status is expected (default 200); a TCP check passes when the connection
  opens (which proves the peer's sidecar, not its app). Every probe ends within `timeout`.
- `observe` (pure) folds results: `unhealthy_threshold` failures in a row take a
  healthy host out (`host.hc_failed`), `healthy_threshold` successes in a row bring it
  back. Hosts start healthy (the registry already carries the app's readiness); the
  balancer avoids failed hosts (cluster.py) unless too few are left (panic).
- Checks run only for clusters that carried a request (the ones the sidecar uses), and
  stop when a cluster or host leaves the configuration or its check changes.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions

from gossamer.errors import GossamerError
from gossamer.proxy.config import Cluster, Endpoint, HealthCheck
from gossamer.proxy.upstream.balancer import Host

# (cluster, endpoint, protocol, seconds allowed, ALPN h2 or not) -> transport
Opener = Callable[[Cluster, Endpoint, asyncio.BaseProtocol, float, bool], Awaitable[Any]]


def observe(host: Host, ok: bool, check: HealthCheck) -> bool:
    """Fold one probe result into `host`; True when it moved in or out."""
    if ok != host.hc_failed:  # agrees with the current state
        host.hc_streak = 0
        return False
    host.hc_streak += 1
    need = check.healthy_threshold if host.hc_failed else check.unhealthy_threshold
    if host.hc_streak < max(need, 1):
        return False
    host.hc_failed = not host.hc_failed
    host.hc_streak = 0
    return True


def http_request(check: HealthCheck, authority: str) -> bytes:
    return (
        f"GET {check.http_path} HTTP/1.1\r\nHost: {check.host or authority}\r\n"
        "User-Agent: gossamer-health-check\r\nConnection: close\r\n\r\n"
    ).encode()


def parse_status(head: bytes) -> int:
    """The status of an HTTP/1.x status line; ValueError when it is not one."""
    version, _, rest = head.partition(b" ")
    if not version.startswith(b"HTTP/1."):
        raise ValueError("not an HTTP/1.x response")
    return int(rest[:3])


class _Probe(asyncio.Protocol):
    """Reads up to the end of the status line."""

    def __init__(self) -> None:
        self.buffer = b""
        self.status: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        if self.status.done():
            return
        self.buffer += data
        end = self.buffer.find(b"\r\n")
        if end >= 0:
            try:
                self.status.set_result(parse_status(self.buffer[:end]))
            except ValueError as exc:
                self.status.set_exception(exc)
        elif len(self.buffer) > 8192:
            self.status.set_exception(ValueError("status line too long"))

    def eof_received(self) -> bool:
        self.connection_lost(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.status.done():
            self.status.set_exception(ConnectionError("closed before a status line"))


class _H2Probe(asyncio.Protocol):
    """One HTTP/2 GET on a fresh connection: the `:status` of its response."""

    def __init__(self) -> None:
        self.status: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.transport: Any = None

    def start(self, transport: Any, path: str, authority: str, tls: bool) -> None:
        self.transport = transport
        self.conn.initiate_connection()
        self.conn.send_headers(
            1,
            [
                (b":method", b"GET"),
                (b":scheme", b"https" if tls else b"http"),
                (b":path", path.encode()),
                (b":authority", authority.encode()),
                (b"user-agent", b"gossamer-health-check"),
            ],
            end_stream=True,
        )
        transport.write(self.conn.data_to_send())

    def data_received(self, data: bytes) -> None:
        if self.status.done():
            return
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self.status.set_exception(ValueError(f"HTTP/2: {exc}"))
            return
        for ev in events:
            if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == 1:
                status = dict(ev.headers).get(b":status", b"")
                if status.isdigit():
                    self.status.set_result(int(status))
                else:
                    self.status.set_exception(ValueError("no :status"))
                return
            if isinstance(ev, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
                self.status.set_exception(ConnectionError("stream reset"))
                return
        pending = self.conn.data_to_send()
        if pending and self.transport is not None:
            self.transport.write(pending)

    def eof_received(self) -> bool:
        self.connection_lost(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.status.done():
            self.status.set_exception(ConnectionError("closed before a response"))


class HealthChecker:
    """The probing tasks of one sidecar, one per (cluster, host)."""

    def __init__(
        self,
        opener: Opener,
        *,
        rng: random.Random,
        on_change: Callable[[str], None],
        on_failure: Callable[[str], None] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.opener = opener
        self.rng = rng
        self.on_change = on_change  # cluster name, when a host moved in or out
        self.on_failure = on_failure  # service name, per failed probe
        self.sleep = sleep
        self._tasks: dict[tuple[str, tuple[str, int]], tuple[Any, asyncio.Task[None]]] = {}

    async def probe(self, cluster: Cluster, endpoint: Endpoint, check: HealthCheck) -> bool:
        """One check of one endpoint; True when it passed."""
        proto: _Probe | _H2Probe = _H2Probe() if check.http2 else _Probe()
        transport: Any = None
        try:
            async with asyncio.timeout(check.timeout):
                h2 = check.http2 if check.http_path is not None else cluster.protocol.is_h2
                transport = await self.opener(cluster, endpoint, proto, check.timeout, h2)
                if check.http_path is None:
                    return True
                if isinstance(proto, _H2Probe):
                    tls = cluster.tls and endpoint.tls
                    proto.start(transport, check.http_path, check.host or cluster.service, tls)
                else:
                    transport.write(http_request(check, cluster.service))
                return check.expected(await proto.status)
        except (GossamerError, OSError, TimeoutError, ValueError):
            return False
        finally:
            if transport is not None:
                transport.close()
            if proto.status.done() and not proto.status.cancelled():
                proto.status.exception()  # retrieved: no "never retrieved" warning

    async def _run(self, cluster: Cluster, host: Host, check: HealthCheck) -> None:
        await self.sleep(self.rng.uniform(0.0, check.interval))
        while True:
            ok = await self.probe(cluster, host.endpoint, check)
            if not ok and self.on_failure is not None:
                self.on_failure(cluster.service)
            if observe(host, ok, check):
                self.on_change(cluster.name)
            await self.sleep(check.interval * self.rng.uniform(0.9, 1.1))

    def sync(self, targets: dict[tuple[str, tuple[str, int]], tuple[Cluster, Host]]) -> None:
        """Probe exactly `targets` (clusters with a health check): start what is new,
        stop what left or changed (hosts that are no longer checked count as healthy)."""
        for key, ((cluster, host), task) in list(self._tasks.items()):
            target = targets.get(key)
            if target is None or target[0] != cluster or target[1] is not host:
                task.cancel()
                del self._tasks[key]
                if target is None or target[1] is host:
                    host.hc_failed = False
                    host.hc_streak = 0
        loop = asyncio.get_running_loop()
        for key, (cluster, host) in targets.items():
            if key not in self._tasks and cluster.health_check is not None:
                task = loop.create_task(self._run(cluster, host, cluster.health_check))
                self._tasks[key] = ((cluster, host), task)

    @property
    def checking(self) -> int:
        return len(self._tasks)

    def close(self) -> None:
        for _, task in self._tasks.values():
            task.cancel()
        self._tasks.clear()


__all__ = ["HealthChecker", "http_request", "observe", "parse_status"]
