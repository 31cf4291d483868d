"""Serve the operator API (control/operator_api.py) on `control.api_listen`, fed by a running
ControlPlane: registry state, streams with ACK/NACK state, configuration status,
control-plane metrics, join tokens from the CA directory. Its connections are capped
and timed out (control/api_limits.py) so that it cannot take the file descriptors the
xDS, bootstrap and renewal ports need."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gossamer.control.api_limits import ApiLimits, body_timeout_middleware, handler_factory
from gossamer.control.api_tokens import ApiTokenStore, FileToken
from gossamer.control.audit import AuditLog
from gossamer.control.metrics import ControlMetricSources, metrics_renderer
from gossamer.control.observe_api import add_observe_routes
from gossamer.control.operator_api import ApiSources, OperatorApi
from gossamer.control.revocation_api import RevocationRoutes, add_revocation_routes
from gossamer.control.tap_api import add_tap_routes
from gossamer.discovery.model import RegistryState
from gossamer.errors import GossamerError
from gossamer.fdlimits import ConnectionLimit, nofile_limit
from gossamer.logs import event

if TYPE_CHECKING:
    from gossamer.control.server import ControlPlane

log = logging.getLogger("gossamer.control.operator_api")
# asyncio accepts up to `backlog` connections at a time, each holding a descriptor until
# the connection cap has seen it: a small batch keeps that spike small
API_BACKLOG = 16


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
    def __init__(self, plane: ControlPlane, limits: ApiLimits | None = None) -> None:
        self.plane = plane
        self.limits = limits or ApiLimits()
        mesh = plane.mesh
        data_dir = mesh.control.data_dir
        self.tokens = ApiTokenStore(data_dir)
        self.admin_token = self.tokens.ensure_admin()
        observability = mesh.observability
        token_file = observability.prometheus_token_file
        self.prometheus_token = (
            self.tokens.add_file_token("prometheus", "viewer", token_file)
            if token_file is not None
            else None
        )
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
                registrations_refused=lambda: security.registration.refused if security else {},
                api_overflows=lambda: (
                    self.connection_limit.overflows if self.connection_limit else 0
                ),
                taps=security.tap_hub.counts if security else lambda: (0, 0, 0),
                history=self._history_counts,
            )
        )
        sources = ApiSources(
            registry_state=registry_state,
            sidecars=lambda: sidecar_rows(plane),
            config_info=plane.status,
            service_policies=self._policies,
            ca_pin=(lambda: security.ca.get().root_pin()) if security else None,
            metrics_text=render,
            http_sd_open=lambda: observability.http_sd_open,
        )
        join_tokens = security.shared if security else None
        self.api = OperatorApi(sources, self.tokens, join_tokens, AuditLog(data_dir))
        self.app = self.api.app()
        if security is not None:  # POST/GET /v1/revocations (control/revocation_api.py)
            add_revocation_routes(
                self.app,
                RevocationRoutes(
                    self.api,
                    security.revocations,
                    security.lineage,
                    max_cert_ttl=security.max_cert_ttl,
                    on_change=plane.refresh_revocations,
                    announce=security.shared.announce_token_leaves_revoked,
                ),
            )
        if security is not None:  # GET /v1/tap (control/tap_api.py)
            add_tap_routes(self.app, self.api, security.tap_hub, registry_state)
        self.app.middlewares.append(body_timeout_middleware(self.limits.body_timeout))
        # dashboard and /v1/stat, /v1/edges, /v1/top, /v1/overview (control/observe_api.py);
        self.observe = add_observe_routes(
            self.app, self.api, observability, remembered_nacks=plane.registry.nacks
        )
        self._runner: web.AppRunner | None = None
        self._server: asyncio.AbstractServer | None = None
        self.connection_limit: ConnectionLimit | None = None
        self.port: int | None = None

    def _history_counts(self) -> tuple[int, int]:
        series = self.observe.series if hasattr(self, "observe") else None
        return series.counts() if series is not None else (0, 0)

    def _policies(self) -> dict[str, dict[str, Any]]:
        mesh = self.plane.publisher.mesh
        if mesh is None:
            return {}
        return {f"{k.name}.{k.namespace}": dataclasses.asdict(p) for k, p in mesh.policies.items()}

    async def start(self) -> int:
        address = self.plane.mesh.control.api_listen
        limits = self.limits
        self._runner = web.AppRunner(
            self.app, access_log=None, keepalive_timeout=limits.idle_timeout
        )
        await self._runner.setup()
        nofile = nofile_limit()
        self.connection_limit = limit = limits.connection_limit(nofile)
        server = self._runner.server
        assert server is not None  # after setup()
        factory = handler_factory(server, limits, limit)
        try:
            self._server = await asyncio.get_running_loop().create_server(
                factory, address.host, address.port, backlog=API_BACKLOG
            )
        except OSError as exc:
            raise GossamerError(
                f"cannot listen on {address}: {exc.strerror}", hint="is the port in use?"
            ) from None
        sockets = list(self._server.sockets or ())
        self.port = sockets[0].getsockname()[1] if sockets else address.port
        event(log, logging.INFO, "operator API listening", address=f"{address.host}:{self.port}",
              max_connections=limit.max_connections, open_file_limit=nofile)  # fmt: skip
        if self.prometheus_token is not None:
            self._log_prometheus_token(self.prometheus_token)
        if self.plane.mesh.observability.http_sd_open:
            event(log, logging.WARNING, "observability.http_sd is open: anyone who reaches "
                  "the operator API lists every sidecar's address and metrics port")  # fmt: skip
        if self.admin_token:
            event(
                log,
                logging.WARNING,
                "created the first admin API token",
                file=str(self.tokens.dir / "admin-token"),
            )
        return self.port

    @staticmethod
    def _log_prometheus_token(token: FileToken) -> None:
        record = token.record()
        if record is None:
            event(log, logging.WARNING, "observability.prometheus_token_file gives no token "
                  "yet; re-read when it changes", error=token.error)  # fmt: skip
        else:
            event(log, logging.INFO, "accepting the viewer token in the Prometheus token file",
                  file=str(token.path))  # fmt: skip

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
