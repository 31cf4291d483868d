"""`GET /v1/tap`: live request records of one service, as newline-delimited JSON.

    GET /v1/tap?service=S[&to=T&path=/p&method=M&direction=inbound|outbound&max=N&rate=R]

Needs the `operator` role. Opens a tap in the hub (control/tap_hub.py), which sends it
to every sidecar of S on this replica (and to those connecting while it is open), then
streams one JSON object per line until `max` records were sent or the client goes away;
then the tap is closed at the sidecars. Record lines carry `ts`, `direction`, `source`,
`destination`, `method`, `authority`, `path`, `status`, `latency_ms`, `bytes`,
`trace_id` and `sampled`; other lines have a `type`: `{"type": "status", "sidecars":
n, "dropped": d}` first, when drops grow, and every `HEARTBEAT_SECONDS` (which is also
how a client that left is noticed while no records flow). A client that does not take a
line for `WRITE_SECONDS` loses its tap ("client too slow"), and when the control plane
stops (`app.on_shutdown`) every open tap ends at once with a last line
`{"type": "end", "reason": "control plane stopping"}` (a tap that reached `max` just
ends). Each
tap opened and closed is written to the audit log (who, service, namespace, filters; on
close how many records and drops, and why); refused taps are audited by the guard
(`audit_reads`) and the 429 here.

Bad or unknown parameters are a 400 naming the parameter; a service that is not in the
registry is a 404; a known service with no sidecar connected here streams status lines
(`sidecars: 0`) and records once one connects; more than `MAX_TAPS` open taps is a 429.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from gossamer.contract import mesh_pb2
from gossamer.control.api_tokens import ApiToken
from gossamer.control.operator_api import OperatorApi
from gossamer.control.tap_hub import OpenTap, TapHub, TapSpec, TooManyTaps
from gossamer.discovery.model import RegistryState
from gossamer.errors import ConfigError, NotFound

PARAMS = ("service", "to", "path", "method", "direction", "max", "rate")
HEARTBEAT_SECONDS = 2.0
WRITE_SECONDS = 10.0  # a client that takes longer to take one line is dropped ("client too slow")
MAX_RECORDS = 100_000
STOPPING = "control plane stopping"  # the one reason a tap's last line tells the client
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_METHOD = re.compile(r"^[A-Za-z]{1,20}$")


def _number(raw: str | None, name: str, low: int, high: int) -> int:
    if raw is None:
        return 0
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise ConfigError(f"must be a number between {low} and {high}", field=name)
    return int(raw)


def parse_spec(query: Any) -> tuple[TapSpec, int]:
    """The tap asked for by the query string, and `max` (0: no limit)."""
    for key in query:
        if key not in PARAMS:
            raise ConfigError(f"unknown parameter (known: {', '.join(PARAMS)})", field=key)
    raw = query.get("service") or ""
    name, _, namespace = raw.partition(".")
    if not _NAME.match(name) or (namespace and not _NAME.match(namespace)):
        raise ConfigError("give a service name, e.g. web or web.default", field="service")
    to = query.get("to", "")
    if to and not _NAME.match(to):
        raise ConfigError("must be a service name", field="to")
    path = query.get("path", "")
    if path and not path.startswith("/"):
        raise ConfigError("must be a path prefix starting with /", field="path")
    method = query.get("method", "")
    if method and not _METHOD.match(method):
        raise ConfigError("must be an HTTP method, e.g. GET", field="method")
    direction = query.get("direction", "")
    if direction not in ("", "inbound", "outbound"):
        raise ConfigError("must be inbound or outbound", field="direction")
    spec = TapSpec(
        service=name,
        namespace=namespace or None,
        direction=direction,
        to=to,
        path_prefix=path,
        method=method.upper(),
        rate=_number(query.get("rate"), "rate", 1, 100),
    )
    return spec, _number(query.get("max"), "max", 1, MAX_RECORDS)


def record_json(record: mesh_pb2.TapRecord) -> dict[str, Any]:
    return {
        "ts": record.ts,
        "direction": record.direction,
        "source": record.source or None,
        "destination": record.destination or None,
        "method": record.method,
        "authority": record.authority,
        "path": record.path,
        "status": record.status,
        "latency_ms": record.latency_ms,
        "bytes": record.bytes if record.bytes >= 0 else None,
        "trace_id": record.trace_id or None,
        "sampled": record.sampled,
    }


def _line(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode() + b"\n"


async def _write(response: web.StreamResponse, line: bytes) -> None:
    """Write one line; TimeoutError when the client has not taken it in WRITE_SECONDS
    (a paused `gossamer tap | less`, a half-open connection)."""
    async with asyncio.timeout(WRITE_SECONDS):
        await response.write(line)


class TapRoutes:
    def __init__(
        self,
        api: OperatorApi,
        hub: TapHub,
        registry_state: Callable[[], Awaitable[RegistryState]],
    ) -> None:
        self.api = api
        self.hub = hub
        self.registry_state = registry_state

    async def tap(self, request: web.Request, caller: ApiToken) -> web.StreamResponse:
        spec, limit = parse_spec(request.query)
        state = await self.registry_state()
        if not any(k.name == spec.service and spec.namespace in (None, k.namespace)
                   for k in state.services):  # fmt: skip
            raise NotFound(f"service {spec.service!r} is not in the registry")
        filters = {k: v for k, v in (("to", spec.to), ("path", spec.path_prefix),
                   ("method", spec.method), ("direction", spec.direction)) if v}  # fmt: skip
        namespace = spec.namespace or "*"
        try:
            tap = self.hub.open(spec)
        except TooManyTaps as exc:
            self.api.audit.record(caller.name, caller.role, "GET /v1/tap", spec.service,
                                  "failed", status=429, namespace=namespace)  # fmt: skip
            return web.json_response({"error": f"{exc.message}; {exc.hint}"}, status=429)
        reason = "client gone"
        audited = False
        response = web.StreamResponse(
            headers={"Content-Type": "application/x-ndjson", "Cache-Control": "no-cache"}
        )
        try:
            # in the try: a failed audit write must not leave the tap open (hub.close below)
            self.api.audit.record(caller.name, caller.role, "tap open", spec.service, "ok",
                                  tap=tap.id, namespace=namespace, max=limit, rate=spec.rate,
                                  **filters)  # fmt: skip
            audited = True
            await response.prepare(request)
            reason = await self._stream(response, tap, limit)
            async with asyncio.timeout(WRITE_SECONDS):
                if reason == STOPPING:  # the control plane ends it: tell the client why
                    await response.write(_line({"type": "end", "reason": reason}))
                await response.write_eof()
        except ConnectionError:
            pass  # the client went away
        except TimeoutError:
            reason = "client too slow"  # it stopped reading: free the slot (WRITE_SECONDS)
            if request.transport is not None:
                request.transport.abort()  # what it has not taken is dropped
        finally:
            self.hub.close(tap)
            if audited:
                self.api.audit.record(caller.name, caller.role, "tap close", spec.service,
                                      "ok", tap=tap.id, namespace=namespace, records=tap.sent,
                                      dropped=tap.dropped, reason=reason)  # fmt: skip
        return response

    async def _stream(self, response: web.StreamResponse, tap: OpenTap, limit: int) -> str:
        """Write status lines and records until `limit` records ("max reached") or the
        control plane stops ("control plane stopping", TapHub.shutdown)."""
        told = -1
        next_beat = 0.0
        while True:
            if self.hub.closing:
                return STOPPING
            now = time.monotonic()
            if now >= next_beat or tap.dropped != told:
                told, next_beat = tap.dropped, now + HEARTBEAT_SECONDS
                await _write(response, _line({"type": "status", "tap": tap.id,
                    "sidecars": self.hub.sidecars(tap.spec), "dropped": tap.dropped}))  # fmt: skip
            while not tap.records.empty() and not self.hub.closing:
                await _write(response, _line(record_json(tap.records.get_nowait())))
                tap.sent += 1
                if limit and tap.sent >= limit:
                    return "max reached"
            tap.wake.clear()
            if self.hub.closing:
                continue  # it stopped while a line was written: end now
            try:
                async with asyncio.timeout(max(0.05, next_beat - time.monotonic())):
                    await tap.wake.wait()
            except TimeoutError:
                pass


def add_tap_routes(
    app: web.Application,
    api: OperatorApi,
    hub: TapHub,
    registry_state: Callable[[], Awaitable[RegistryState]],
) -> TapRoutes:
    routes = TapRoutes(api, hub, registry_state)
    app.router.add_get("/v1/tap", api._guard("operator", routes.tap, audit_reads=True))

    async def stopping(_app: web.Application) -> None:
        hub.shutdown()  # open taps end now, not after aiohttp's graceful wait

    app.on_shutdown.append(stopping)
    return routes
