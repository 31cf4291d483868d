"""Revocation routes of the operator API, added to the app `OperatorApi.app()` made.

Kept apart from operator_api.py (as observe_api.py is). Routes (role needed):

  POST /v1/revocations {serial, reason?}    revoke one leaf by its hex serial   operator
  GET  /v1/revocations                      the revoked leaves not yet expired  viewer

and the lineage half of `DELETE /v1/tokens/{id}` (`revoke_token_leaves`, the operator
API's `on_token_revoked` hook): revoking a join token also revokes every unexpired leaf
descending from it (bootstrapped with it, or renewed from such a leaf), unless the
request says `?keep_certificates=true`.

Every revocation is audited (who, serial, reason) and pushed at once: `on_change` signs
the CRLs again and publishes the ROOTCA secret to every sidecar. A serial that is not
hex, or too long, is a 400 that says so; revoking a serial again keeps its first entry.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from gossamer.certs.crl import format_serial, parse_serial
from gossamer.control.api_tokens import ApiToken
from gossamer.control.lineage import LeafLineage
from gossamer.control.operator_api import OperatorApi, _json
from gossamer.control.revocations import Revocation, RevocationStore
from gossamer.errors import ConfigError

MAX_REASON = 200


class RevocationRoutes:
    def __init__(
        self,
        api: OperatorApi,
        revocations: RevocationStore,
        lineage: LeafLineage,
        *,
        max_cert_ttl: float,
        on_change: Callable[[], None],
    ) -> None:
        self.api = api
        self.revocations = revocations
        self.lineage = lineage
        self.max_cert_ttl = max_cert_ttl
        self.on_change = on_change

    def _revoke(
        self, serials: list[int], reason: str, caller: ApiToken
    ) -> list[tuple[Revocation, bool]]:
        wanted = []
        for serial in serials:
            leaf = self.lineage.get(serial)
            if leaf is not None:
                wanted.append((serial, leaf.not_after, leaf.spiffe_id, leaf.token_id))
            else:  # unknown expiry: no leaf outlives the longest lifetime from now
                wanted.append((serial, time.time() + self.max_cert_ttl, "", ""))
        done = self.revocations.revoke(wanted, reason=reason, by=caller.name)
        for entry, new in done:
            if new:
                self.api.audit.record(
                    caller.name, caller.role, "revoke certificate", entry.serial, "ok",
                    reason=entry.reason, spiffe_id=entry.spiffe_id, token_id=entry.token_id,
                )  # fmt: skip
        if any(new for _, new in done):
            self.on_change()
        return done

    async def revoke(self, request: web.Request, caller: ApiToken) -> web.Response:
        body = await self.api._body(request)
        serial = parse_serial(body.get("serial"))
        reason = body.get("reason") or ""
        if not isinstance(reason, str) or len(reason) > MAX_REASON:
            raise ConfigError(f"reason must be text of at most {MAX_REASON} characters")
        [(entry, new)] = self._revoke([serial], reason, caller)
        known = self.lineage.get(serial) is not None
        return _json(
            {**entry.public(), "already_revoked": not new, "issued_here": known},
            201 if new else 200,
        )

    async def list(self, request: web.Request, caller: ApiToken) -> web.Response:
        return _json({"revoked": [e.public() for e in self.revocations.list()]})

    def revoke_token_leaves(
        self, token_id: str, caller: ApiToken, keep_certificates: bool
    ) -> dict[str, Any]:
        """DELETE /v1/tokens/{id}'s second half: what it did to the token's leaves."""
        leaves = self.lineage.leaves_of(token_id)
        if keep_certificates:
            return {"certificates_kept": [leaf.serial for leaf in leaves]}
        done = self._revoke(
            [leaf.serial_number for leaf in leaves], f"join token {token_id} revoked", caller
        )
        return {"certificates_revoked": [format_serial(e.serial_number) for e, _ in done]}


def add_revocation_routes(app: web.Application, routes: RevocationRoutes) -> None:
    api = routes.api
    app.router.add_post("/v1/revocations", api._guard("operator", routes.revoke))
    app.router.add_get("/v1/revocations", api._guard("viewer", routes.list))
    api.on_token_revoked = routes.revoke_token_leaves
