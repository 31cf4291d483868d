"""Serve the real operator API app (control/operator_api.py) plus the observe routes on loopback.

async with operator_api(tmp_path, registry_state=mesh.registry_state) as api:
    api.url, api.token (an admin token), api.sidecars (a list the test may change)

`api_call` makes one JSON request to an operator API on loopback (this one or a real
`gossamer control` process's).

The in-process `operator_api(...)` (its registry a callable, no control plane behind it)
is for unit tests; tests under tests/e2e talk to a real `gossamer control`
(tests/unit/test_e2e_realness.py checks), `api_call` serves both.
"""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from gossamer.control.api_tokens import ApiTokenStore
from gossamer.control.audit import AuditLog
from gossamer.control.observe_api import ObserveRoutes, add_observe_routes
from gossamer.control.operator_api import ApiSources, OperatorApi
from gossamer.discovery.model import RegistryState
from gossamer.observe.settings import ObservabilitySettings
from tests.helpers.procs import free_port


def api_call(
    port: int, path: str, token: str | None, method: str = "GET", body: Any = None
) -> tuple[int, dict[str, Any]]:
    """One JSON request to the operator API on 127.0.0.1:`port` (a bearer token if
    `token`): (status, the JSON body), for an error status too."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}"} if token else {},
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@dataclass
class RunningApi:
    url: str
    token: str
    tokens: ApiTokenStore
    routes: ObserveRoutes
    sidecars: list[dict[str, Any]] = field(default_factory=list)
    nacks: dict[str, dict[str, Any]] = field(default_factory=dict)


@contextlib.asynccontextmanager
async def operator_api(
    tmp_path: Path,
    registry_state: Callable[[], RegistryState],
    *,
    settings: ObservabilitySettings | None = None,
    sidecars: list[dict[str, Any]] | None = None,
) -> AsyncIterator[RunningApi]:
    shown = sidecars if sidecars is not None else []
    nacks: dict[str, dict[str, Any]] = {}

    async def state() -> RegistryState:
        return registry_state()

    sources = ApiSources(
        registry_state=state,
        sidecars=lambda: list(shown),
        config_info=lambda: {"version": "test"},
    )
    data = tmp_path / "api-data"
    tokens = ApiTokenStore(data)
    admin = tokens.ensure_admin()
    assert admin is not None
    api = OperatorApi(sources, tokens, None, AuditLog(data))
    app = api.app()
    routes = add_observe_routes(app, api, settings, remembered_nacks=lambda: nacks)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield RunningApi(f"http://127.0.0.1:{port}", admin, tokens, routes, shown, nacks)
    finally:
        await runner.cleanup()
