"""The operator API: JSON over HTTP on `api_listen`, bearer tokens with roles, audit log.

Routes (role needed):
  GET  /v1/services, /v1/endpoints, /v1/sidecars, /v1/config     viewer
  GET  /v1/gateways  (node gateways, their nodes' instance counts) viewer
  GET  /v1/tokens                                                 operator
  POST /v1/tokens {service, namespace?, ttl?, reusable?,          operator (token shown once;
                   addresses?}
                                                                  admin in gossamer-system)
  DELETE /v1/tokens/{id}[?keep_certificates=true]                 operator (also revokes
                                                                  the token's leaves)
  POST /v1/revocations, GET /v1/revocations  operator, viewer (control/revocation_api.py)
  GET/POST /v1/api-tokens, DELETE /v1/api-tokens/{name}           admin
  GET  /v1/audit                                                  admin
  GET  /v1/http_sd    Prometheus HTTP service discovery: every sidecar's metrics port  viewer
                      (anyone with mesh.yaml's observability.http_sd: open)
  GET  /metrics       the control plane's own metrics (open, like istiod's)
  GET  /healthz       liveness (open)
Every change is written to the audit log with the caller's token name, and so are
refused requests (401 without a valid token, 403, a change that failed). Join tokens and
API tokens are returned once at creation and never again. A join token admits one
sidecar instance unless `reusable` says how many (1 to 10,000), and lives `ttl` (1h) at
most mesh.yaml's `control.max_token_ttl` (24h): a longer ttl is refused with 400.
`addresses` lists IP addresses and host names its sidecars may register besides the
address they connect from (their leaves carry them: certs/sans.py; refused ones: 400).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from gossamer.certs.errors import CaError
from gossamer.certs.sans import check_addresses
from gossamer.certs.token_rules import check_uses
from gossamer.contract.identity import gateway_key, is_reserved_namespace
from gossamer.control.api_tokens import ApiToken, ApiTokenStore, role_allows
from gossamer.control.audit import AuditLog
from gossamer.control.shared_security import SharedSecurity
from gossamer.discovery.model import RegistryState
from gossamer.errors import AuthorizationDenied, ConfigError, GossamerError, NotFound
from gossamer.yamlconf import parse_duration

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class ApiSources:
    """Where the API reads the control plane's live state from."""

    registry_state: Callable[[], Awaitable[RegistryState]]
    sidecars: Callable[[], list[dict[str, Any]]]
    config_info: Callable[[], dict[str, Any]]
    service_policies: Callable[[], dict[str, dict[str, Any]]] = field(default=lambda: {})
    ca_pin: Callable[[], str] | None = None
    metrics_text: Callable[[], bytes] | None = None
    http_sd_open: Callable[[], bool] = field(default=lambda: False)


MAX_AUDIT_LIMIT = 10_000


def gateway_rows(state: RegistryState) -> list[dict[str, Any]]:
    """The registered node gateways, each with its node's instance counts."""
    gateway = gateway_key()
    per_node: dict[str, list[int]] = {}
    for (key, _), ep in state.endpoints.items():
        if key != gateway and ep.node:
            counts = per_node.setdefault(ep.node, [0, 0])
            counts[0] += 1
            counts[1] += ep.health.value == "healthy"
    rows = []
    for ep in state.endpoints_of(gateway):
        total, healthy = per_node.get(ep.node, [0, 0])
        rows.append(
            {
                "node": ep.node,
                "zone": ep.zone,
                "address": ep.address,
                "port": ep.port,
                "instance_id": ep.instance_id,
                "health": ep.health.value,
                "instances": total,
                "healthy_instances": healthy,
            }
        )
    return sorted(rows, key=lambda r: (r["node"], r["instance_id"]))


class Refused(GossamerError):
    """A request the caller's role does not allow, found out inside a handler."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(data, default=str), status=status, content_type="application/json"
    )


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


class OperatorApi:
    def __init__(
        self,
        sources: ApiSources,
        api_tokens: ApiTokenStore,
        join_tokens: SharedSecurity | None,
        audit: AuditLog,
    ) -> None:
        self.sources = sources
        self.api_tokens = api_tokens
        self.join_tokens = join_tokens
        self.audit = audit
        # revocation_api.py: revoke the leaves a revoked join token produced
        self.on_token_revoked: Callable[[str, ApiToken, bool], Awaitable[dict[str, Any]]] | None = (
            None
        )

    # -- plumbing ----------------------------------------------------------------------
    def _guard(
        self,
        role: str,
        handler: Callable[[web.Request, ApiToken], Awaitable[web.StreamResponse]],
        *,
        audit_reads: bool = False,  # audit refused GETs too (GET /v1/tap, control/tap_api.py)
    ) -> Handler:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            header = request.headers.get("Authorization", "")
            token = header[7:].strip() if header.lower().startswith("bearer ") else None
            action = f"{request.method} {request.path}"
            # which GET was refused (e.g. the service a viewer tried to tap), bounded
            asked = {"query": request.query_string[:200]} if audit_reads else {}
            try:
                caller = self.api_tokens.authenticate(token)
            except AuthorizationDenied as exc:
                self.audit.record(
                    "-", "-", action, "", "unauthenticated", status=401, peer=request.remote
                )
                return _error(401, exc.message)
            if not role_allows(caller.role, role):
                if audit_reads or request.method != "GET":
                    self.audit.record(
                        caller.name, caller.role, action, "", "denied", status=403, **asked
                    )
                return _error(403, f"role {caller.role} may not do this (needs {role})")
            try:
                return await handler(request, caller)
            except Refused as exc:
                failure = (exc.status, exc.message, "denied")
            except NotFound as exc:
                failure = (404, exc.message, "failed")
            except (ConfigError, CaError) as exc:
                failure = (400, exc.message, "failed")
            except GossamerError as exc:
                failure = (500, exc.message, "failed")
            status, message, outcome = failure
            if audit_reads or request.method != "GET":
                self.audit.record(
                    caller.name,
                    caller.role,
                    action,
                    "",
                    outcome,
                    status=status,
                    error=message,
                    **asked,
                )
            return _error(status, message)

        return wrapped

    async def _body(self, request: web.Request) -> dict[str, Any]:
        try:
            data = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ConfigError("the request body is not JSON") from None
        if not isinstance(data, dict):
            raise ConfigError("the request body must be a JSON object")
        return data

    # -- reads -------------------------------------------------------------------------
    async def services(self, request: web.Request, caller: ApiToken) -> web.Response:
        state = await self.sources.registry_state()
        policies = self.sources.service_policies()
        out = []
        for key, svc in sorted(state.services.items()):
            eps = state.endpoints_of(key)
            out.append(
                {
                    **svc.to_dict(),
                    "endpoints": len(eps),
                    "healthy_endpoints": sum(e.health.value == "healthy" for e in eps),
                    "policy": policies.get(f"{key.name}.{key.namespace}", {}),
                }
            )
        return _json({"revision": state.revision, "services": out})

    async def endpoints(self, request: web.Request, caller: ApiToken) -> web.Response:
        state = await self.sources.registry_state()
        wanted = request.query.get("service")
        eps = [
            e.to_dict()
            for e in sorted(state.endpoints.values(), key=lambda e: (str(e.service), e.instance_id))
            if wanted is None or e.service.name == wanted or str(e.service) == wanted
        ]
        return _json({"revision": state.revision, "endpoints": eps})

    async def gateways(self, request: web.Request, caller: ApiToken) -> web.Response:
        state = await self.sources.registry_state()
        return _json({"revision": state.revision, "gateways": gateway_rows(state)})

    async def sidecars(self, request: web.Request, caller: ApiToken) -> web.Response:
        return _json({"sidecars": self.sources.sidecars()})

    async def config(self, request: web.Request, caller: ApiToken) -> web.Response:
        return _json(self.sources.config_info())

    async def audit_log(self, request: web.Request, caller: ApiToken) -> web.Response:
        text = request.query.get("limit", "100")
        try:
            limit = int(text)
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_AUDIT_LIMIT:
            raise ConfigError(
                f"limit must be a whole number from 1 to {MAX_AUDIT_LIMIT}, got {text!r}",
                field="limit",
            )
        return _json({"entries": self.audit.tail(limit)})

    # -- join tokens -------------------------------------------------------------------
    def _join_store(self) -> SharedSecurity:
        if self.join_tokens is None or self.sources.ca_pin is None:
            raise GossamerError("this control plane has no CA configured")
        return self.join_tokens

    async def list_join_tokens(self, request: web.Request, caller: ApiToken) -> web.Response:
        return _json({"tokens": [r.public() for r in self._join_store().list_tokens()]})

    async def create_join_token(self, request: web.Request, caller: ApiToken) -> web.Response:
        body = await self._body(request)
        store = self._join_store()
        assert self.sources.ca_pin is not None
        try:
            ttl = parse_duration(body.get("ttl", "1h"))
        except ValueError as exc:
            raise ConfigError(f"ttl: {exc}", field="ttl") from None
        if ttl <= 0:
            raise ConfigError(f"ttl must be positive, got {body.get('ttl')!r}", field="ttl")
        service = str(body.get("service", ""))
        namespace = str(body.get("namespace", "default"))
        if is_reserved_namespace(namespace) and caller.role != "admin":
            raise Refused(
                403,
                f"namespace {namespace} is reserved for the mesh itself: "
                "only an admin may create join tokens in it",
            )
        uses = check_uses(body.get("reusable", 1))  # ttl above control.max_token_ttl: 400
        # addresses its sidecars may register besides their connection's (certs/sans.py)
        addresses = check_addresses(body.get("addresses", []))
        token, record = await store.create_token(
            service,
            self.sources.ca_pin(),
            namespace=namespace,
            ttl=ttl,
            uses=uses,
            addresses=addresses,
        )
        self.audit.record(
            caller.name,
            caller.role,
            "create join token",
            f"{service}.{namespace}",
            "ok",
            token_id=record.token_id,
            uses=uses,
            **({"addresses": list(addresses)} if addresses else {}),
        )
        return _json({"token": token, **record.public()}, 201)

    async def revoke_join_token(self, request: web.Request, caller: ApiToken) -> web.Response:
        token_id = request.match_info["token_id"]
        record = await self._join_store().revoke_token(token_id)
        self.audit.record(caller.name, caller.role, "revoke join token", token_id, "ok")
        out = record.public()
        if self.on_token_revoked is not None:
            keep = request.query.get("keep_certificates", "").lower() in ("1", "true", "yes")
            out.update(await self.on_token_revoked(token_id, caller, keep))
        return _json(out)

    # -- API tokens --------------------------------------------------------------------
    async def list_api_tokens(self, request: web.Request, caller: ApiToken) -> web.Response:
        return _json({"tokens": [t.public() for t in self.api_tokens.list()]})

    async def create_api_token(self, request: web.Request, caller: ApiToken) -> web.Response:
        body = await self._body(request)
        name, role = str(body.get("name", "")), str(body.get("role", ""))
        token = self.api_tokens.create(name, role)
        self.audit.record(
            caller.name, caller.role, "create api token", name, "ok", granted_role=role
        )
        return _json({"name": name, "role": role, "token": token}, 201)

    async def delete_api_token(self, request: web.Request, caller: ApiToken) -> web.Response:
        name = request.match_info["name"]
        self.api_tokens.delete(name)
        self.audit.record(caller.name, caller.role, "delete api token", name, "ok")
        return _json({"deleted": name})

    # -- service discovery -------------------------------------------------------------
    async def http_sd(self, request: web.Request, caller: ApiToken | None) -> web.Response:
        """Prometheus http_sd: one target group per sidecar with its metrics port (never
        the admin port, which listens on 127.0.0.1 in the sidecar's namespace)."""
        state = await self.sources.registry_state()
        groups = []
        for e in sorted(state.endpoints.values(), key=lambda e: (str(e.service), e.instance_id)):
            if e.metrics_port is None:
                continue
            host = f"[{e.address}]" if ":" in e.address else e.address
            groups.append(
                {
                    "targets": [f"{host}:{e.metrics_port}"],
                    "labels": {
                        "__metrics_path__": "/metrics",
                        "gossamer_service": e.service.name,
                        "gossamer_namespace": e.service.namespace,
                        "gossamer_instance": e.instance_id,
                        "gossamer_zone": e.zone,
                    },
                }
            )
        return _json(groups)

    def _http_sd_route(self) -> Handler:
        """`/v1/http_sd`: a viewer token, unless mesh.yaml says it is open."""
        guarded = self._guard("viewer", self.http_sd)

        async def route(request: web.Request) -> web.StreamResponse:
            if self.sources.http_sd_open():
                return await self.http_sd(request, None)
            return await guarded(request)

        return route

    # -- open endpoints ----------------------------------------------------------------
    async def metrics(self, request: web.Request) -> web.Response:
        body = self.sources.metrics_text() if self.sources.metrics_text else b""
        return web.Response(body=body, content_type="text/plain", charset="utf-8")

    async def healthz(self, request: web.Request) -> web.Response:
        return _json({"status": "ok"})

    def app(self) -> web.Application:
        app = web.Application()
        r = app.router
        r.add_get("/v1/services", self._guard("viewer", self.services))
        r.add_get("/v1/endpoints", self._guard("viewer", self.endpoints))
        r.add_get("/v1/sidecars", self._guard("viewer", self.sidecars))
        r.add_get("/v1/gateways", self._guard("viewer", self.gateways))
        r.add_get("/v1/config", self._guard("viewer", self.config))
        r.add_get("/v1/tokens", self._guard("operator", self.list_join_tokens))
        r.add_post("/v1/tokens", self._guard("operator", self.create_join_token))
        r.add_delete("/v1/tokens/{token_id}", self._guard("operator", self.revoke_join_token))
        r.add_get("/v1/api-tokens", self._guard("admin", self.list_api_tokens))
        r.add_post("/v1/api-tokens", self._guard("admin", self.create_api_token))
        r.add_delete("/v1/api-tokens/{name}", self._guard("admin", self.delete_api_token))
        r.add_get("/v1/audit", self._guard("admin", self.audit_log))
        r.add_get("/v1/http_sd", self._http_sd_route())
        r.add_get("/metrics", self.metrics)
        r.add_get("/healthz", self.healthz)
        return app
