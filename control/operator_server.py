"""Serve the operator API (control/operator_api.py) on `control.api_listen`, fed by a running
ControlPlane: registry state, streams with ACK/NACK state, configuration status,
control-plane metrics, join tokens from the CA directory."""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gossamer.control.api_tokens import ApiTokenStore
from gossamer.control.audit import AuditLog
from gossamer.control.metrics import ControlMetricSources, metrics_renderer
from gossamer.control.observe_api import add_observe_routes
from gossamer.control.operator_api import ApiSources, OperatorApi
from gossamer.discovery.model import RegistryState
from gossamer.errors import GossamerError
from gossamer.logs import event

if TYPE_CHECKING:
    from gossamer.control.server import ControlPlane

log = logging.getLogger("gossamer.control.operator_api")


def sidecar_rows(plane: ControlPlane) -> list[dict[str, Any]]:
    """One row per connected ADS stream, with the facts the dashboard and status show."""
    now = time.time()
    rows = []
    for info in plane.registry.streams():
        row = info.to_dict()
        expiry = info.cert_not_after
        row["cert_seconds_left"] = None if expiry is None else int(expiry - now)
        rows.append(row)
    return rows


class ApiServer:
    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane
        mesh = plane.mesh
        data_dir = mesh.control.data_dir
        self.tokens = ApiTokenStore(data_dir)
        self.admin_token = self.tokens.ensure_admin()
        security = plane.security

        async def registry_state() -> RegistryState:
            state = plane.publisher.state
            return state if state is not None else RegistryState(0)

        def registry_size() -> tuple[int, int]:
            state = plane.publisher.state
            return (0, 0) if state is None else (len(state.services), len(state.endpoints))

        render = metrics_renderer(
            ControlMetricSources(
                streams=plane.registry,
                publish_stats=lambda: plane.publisher.stats,
                certificates_issued=lambda: security.issued if security else 0,
                registry_size=registry_size,
                config_loads=lambda: plane.watcher.loads,
                config_error=lambda: plane.watcher.last_error is not None,
            )
        )
        sources = ApiSources(
            registry_state=registry_state,
            sidecars=lambda: sidecar_rows(plane),
            config_info=plane.status,
            service_policies=self._policies,
            ca_pin=(lambda: security.ca.get().root_pin()) if security else None,
            metrics_text=render,
        )
        join_tokens = security.tokens if security else None
        self.api = OperatorApi(sources, self.tokens, join_tokens, AuditLog(data_dir))
        self.app = self.api.app()
        # dashboard and /v1/stat, /v1/edges, /v1/top, /v1/overview (control/observe_api.py);
        observability = mesh.observability
        self.observe = add_observe_routes(
            self.app, self.api, observability, remembered_nacks=plane.registry.nacks
        )
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    def _policies(self) -> dict[str, dict[str, Any]]:
        mesh = self.plane.publisher.mesh
        if mesh is None:
            return {}
        return {f"{k.name}.{k.namespace}": dataclasses.asdict(p) for k, p in mesh.policies.items()}

    async def start(self) -> int:
        address = self.plane.mesh.control.api_listen
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, address.host, address.port)
        try:
            await site.start()
        except OSError as exc:
            raise GossamerError(
                f"cannot listen on {address}: {exc.strerror}", hint="is the port in use?"
            ) from None
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else address.port
        event(log, logging.INFO, "operator API listening", address=f"{address.host}:{self.port}")
        if self.admin_token:
            event(
                log,
                logging.WARNING,
                "created the first admin API token",
                file=str(self.tokens.dir / "admin-token"),
            )
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
