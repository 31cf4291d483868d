"""Revocation routes of the operator API, added to the app `OperatorApi.app()` made.

Kept apart from operator_api.py (as observe_api.py is). Routes (role needed):

  POST /v1/revocations {serial, reason?, not_after?}
                                            revoke one leaf by its hex serial,  operator
                                            and every leaf renewed from it
  GET  /v1/revocations                      the revoked leaves not yet expired  viewer

Revoking a serial also revokes its descendants in the leaf lineage (control/lineage.py:
the unexpired leaves renewed from it, directly or through other renewals), so a stolen
key renewed at once into a fresh leaf is cut off with it, and an old serial taken from a
log still reaches the leaf its sidecar uses now; the answer lists them
(`descendants_revoked`). The revoked leaf's expiry comes from the lineage; else from
`not_after` (seconds since the epoch, as `gossamer certs revoke --cert FILE` reads it
from the certificate); else it is unknown and the entry is kept for the longest
lifetime any leaf can have (`UNKNOWN_LIFETIME`, 720 h).

and the lineage half of `DELETE /v1/tokens/{id}` (`revoke_token_leaves`, the operator
API's `on_token_revoked` hook): revoking a join token also revokes every unexpired leaf
descending from it (bootstrapped with it, or renewed from such a leaf), unless the
request says `?keep_certificates=true`. The lineage is per replica: with a shared store
`announce` has every other replica revoke the leaves it issued from the token too
(control/security.py `follow_token_revocations`), within about a second.

Every revocation is audited (who, serial, reason) and pushed at once: `on_change` signs
the CRLs again and publishes the ROOTCA secret to every sidecar. A serial that is not
hex, or too long, is a 400 that says so; revoking a serial again keeps its first entry.
More than `MAX_REVOCATIONS` live entries is a 400; a revocation list the control plane
cannot read (control/revocations.py) is a 503 and nothing is written over it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from gossamer.certs.crl import format_serial, parse_serial
from gossamer.control.api_tokens import ApiToken
from gossamer.control.lineage import LeafLineage
from gossamer.control.operator_api import OperatorApi, Refused, _json
from gossamer.control.revocations import (
    UNKNOWN_LIFETIME,
    Revocation,
    RevocationReader,
    RevocationsUnavailable,
)
from gossamer.errors import ConfigError

MAX_REASON = 200


class RevocationRoutes:
    def __init__(
        self,
        api: OperatorApi,
        revocations: RevocationReader,
        lineage: LeafLineage,
        *,
        max_cert_ttl: float,
        on_change: Callable[[], None],
        announce: Callable[[str, str], Awaitable[None]] | None = None,
    ) -> None:
        # tell the other replicas to revoke the leaves they issued from a token
        self.announce = announce
        self.api = api
        self.revocations = revocations
        self.lineage = lineage
        self.max_cert_ttl = max_cert_ttl
        self.on_change = on_change

    async def _revoke(
        self,
        serials: list[int],
        reason: str,
        caller: ApiToken,
        *,
        not_after: float | None = None,
    ) -> tuple[list[tuple[Revocation, bool]], list[tuple[Revocation, bool]]]:
        """Revoke `serials` and their descendants: (the entries of `serials`, those of
        the descendants not among them), each with whether it is new. `not_after`: the
        expiry of `serials`' leaves when the lineage does not know them."""
        now = time.time()
        wanted: dict[int, tuple[int, float, str, str]] = {}
        for serial in serials:
            leaf = self.lineage.find(serial)
            if leaf is not None:
                wanted[serial] = (serial, leaf.not_after, leaf.spiffe_id, leaf.token_id)
            elif not_after is not None:
                wanted[serial] = (serial, not_after, "", "")
            else:  # unknown expiry: no leaf outlives the longest lifetime from now
                wanted[serial] = (serial, now + max(UNKNOWN_LIFETIME, self.max_cert_ttl), "", "")
        extra: dict[int, tuple[int, float, str, str]] = {}
        for serial in serials:
            for leaf in self.lineage.descendants(serial):
                number = leaf.serial_number
                if number not in wanted:
                    extra[number] = (number, leaf.not_after, leaf.spiffe_id, leaf.token_id)
        try:
            done = await self.revocations.add(
                [*wanted.values(), *extra.values()], reason=reason, by=caller.name
            )
        except RevocationsUnavailable as exc:
            raise Refused(503, exc.message) from None
        for (entry, new), serial in zip(done, [*wanted, *extra], strict=True):
            if new:
                descends = {} if serial in wanted else {"renewed_from_revoked": True}
                self.api.audit.record(
                    caller.name, caller.role, "revoke certificate", entry.serial, "ok",
                    reason=entry.reason, spiffe_id=entry.spiffe_id, token_id=entry.token_id,
                    **descends,
                )  # fmt: skip
        if any(new for _, new in done):
            self.on_change()
        return done[: len(wanted)], done[len(wanted) :]

    async def revoke(self, request: web.Request, caller: ApiToken) -> web.Response:
        body = await self.api._body(request)
        serial = parse_serial(body.get("serial"))
        reason = body.get("reason") or ""
        if not isinstance(reason, str) or len(reason) > MAX_REASON:
            raise ConfigError(f"reason must be text of at most {MAX_REASON} characters")
        not_after = body.get("not_after")
        if not_after is not None and (
            isinstance(not_after, bool)
            or not isinstance(not_after, int | float)
            or not math.isfinite(not_after)
        ):
            raise ConfigError(
                f"not_after must be the certificate's expiry in seconds since the epoch, "
                f"got {not_after!r}",
                field="not_after",
            )
        known = self.lineage.find(serial) is not None
        [(entry, new)], extra = await self._revoke(
            [serial], reason, caller, not_after=None if not_after is None else float(not_after)
        )
        return _json(
            {
                **entry.public(),
                "already_revoked": not new,
                "issued_here": known,
                "expired": entry.not_after <= time.time(),
                "descendants_revoked": [e.serial for e, _ in extra],
            },
            201 if new or any(n for _, n in extra) else 200,
        )

    async def list(self, request: web.Request, caller: ApiToken) -> web.Response:
        return _json({"revoked": [e.public() for e in self.revocations.list()]})

    async def revoke_token_leaves(
        self, token_id: str, caller: ApiToken, keep_certificates: bool
    ) -> dict[str, Any]:
        """DELETE /v1/tokens/{id}'s second half: what it did to the token's leaves."""
        leaves = self.lineage.leaves_of(token_id)
        if keep_certificates:
            return {"certificates_kept": [leaf.serial for leaf in leaves]}
        done, extra = await self._revoke(
            [leaf.serial_number for leaf in leaves], f"join token {token_id} revoked", caller
        )
        if self.announce is not None:
            await self.announce(token_id, caller.name)
        return {"certificates_revoked": [format_serial(e.serial_number) for e, _ in done + extra]}


def add_revocation_routes(app: web.Application, routes: RevocationRoutes) -> None:
    api = routes.api
    app.router.add_post("/v1/revocations", api._guard("operator", routes.revoke))
    app.router.add_get("/v1/revocations", api._guard("viewer", routes.list))
    api.on_token_revoked = routes.revoke_token_leaves
