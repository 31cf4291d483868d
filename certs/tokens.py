"""Join tokens: how a new sidecar proves which service it is, once, to get certified.

A token reads `gst1.<id>.<secret>.sha256:<hex>`: an id to look the record up, a 160-bit
random secret, and the pin of the CA root's SubjectPublicKeyInfo (as kubeadm's discovery
hash) so the sidecar can verify the control plane at first contact. The store
(`tokens.json` in the CA directory, mode 0600) keeps only a SHA-256 hash of the secret;
verification compares hashes in constant time and checks expiry, revocation and scope
(one service in one namespace).

Uses: a token admits at most `uses` sidecar instances (1 unless made with more, as
`gossamer token create --reusable N`). The first time an instance id presents it, that id
is recorded in the token's record; the same instance presenting it again (a sidecar that
restarts re-bootstraps with its token) is admitted while the token is valid, a new
instance once all uses are taken is refused (`TokenUsedUp`). Records written before use
counts existed have `uses` 0: unlimited, as they were.

Addresses: a token may list IP addresses and host names the operator allows its
sidecars to register besides the address the control plane sees them connect from
(`--allow-address`); the bootstrap signing puts them in the leaf as IP/DNS SANs
(certs/sans.py says which are refused).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path

from gossamer.certs.errors import (
    TokenMalformed,
)
from gossamer.certs.token_rules import (
    MAX_USES,
    PREFIX,
    ParsedToken,
    TokenRecord,
    admit,
    check_presented,
    check_request,
    check_uses,
    mint,
    parse_token,
)
from gossamer.contract.identity import DEFAULT_NAMESPACE
from gossamer.errors import NotFound
from gossamer.fsutil import atomic_write, locked

__all__ = [  # the token rules (certs/token_rules.py) are reachable from here too
    "MAX_INSTANCE_ID",
    "MAX_USES",
    "PREFIX",
    "TOKENS_FILE",
    "USES_FILE",
    "ParsedToken",
    "TokenRecord",
    "TokenStore",
    "admit",
    "check_presented",
    "check_request",
    "check_uses",
    "mint",
    "parse_token",
]

TOKENS_FILE = "tokens.json"
MAX_INSTANCE_ID = 253  # characters of an instance id recorded in a token's record
USES_FILE = "join-token-uses.json"


class TokenStore:
    """Join tokens kept in `<directory>/tokens.json`; safe across processes.

    `max_ttl` (the operator API's and `gossamer token create`'s store: mesh.yaml's
    `control.max_token_ttl`) refuses to make a token that lives longer; None: no cap
    (the compose bootstrap and `gossamer up`, whose sidecars present their token at
    every start)."""

    def __init__(
        self,
        directory: str | Path,
        *,
        clock: Callable[[], float] = time.time,
        max_ttl: float | None = None,
        uses_dir: str | Path | None = None,
    ):
        self.path = Path(directory) / TOKENS_FILE
        self._lock = Path(directory) / ".tokens.lock"
        self._clock = clock
        self.max_ttl = max_ttl
        self._cache: tuple[tuple[int, int], dict[str, TokenRecord]] | None = None
        # The control plane records the instances each token admitted in its own data
        # directory: the CA directory may be read-only (a Compose secret).
        self._uses_path = Path(uses_dir) / USES_FILE if uses_dir is not None else None
        self._uses_lock = Path(uses_dir) / ".join-token-uses.lock" if uses_dir else None

    def _read_tokens(self) -> dict[str, TokenRecord]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return {}
        stamp = (st.st_ino, st.st_mtime_ns)
        if self._cache is not None and self._cache[0] == stamp:
            return self._cache[1]
        raw = json.loads(self.path.read_text())
        records = {r["token_id"]: TokenRecord.from_json(r) for r in raw.get("tokens", [])}
        self._cache = (stamp, records)
        return records

    def _read_uses(self) -> dict[str, list[str]]:
        if self._uses_path is None:
            return {}
        try:
            raw = json.loads(self._uses_path.read_text())
        except FileNotFoundError:
            return {}
        return {str(k): [str(i) for i in v] for k, v in raw.get("instances", {}).items()}

    def _read(self) -> dict[str, TokenRecord]:
        """The tokens, with the instances recorded in the uses file added."""
        records = self._read_tokens()
        uses = self._read_uses()
        if not uses:
            return records
        merged = dict(records)
        for token_id, instances in uses.items():
            record = merged.get(token_id)
            if record is not None:
                both = tuple(dict.fromkeys((*record.instances, *instances)))
                merged[token_id] = replace(record, instances=both)
        return merged

    def _write(self, records: dict[str, TokenRecord]) -> None:
        body = {"tokens": [asdict(r) for r in records.values()]}
        atomic_write(self.path, json.dumps(body, indent=2) + "\n", mode=0o600)
        self._cache = None

    def create(
        self,
        service: str,
        ca_pin: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        ttl: float = 3600.0,
        uses: int = 1,
        addresses: Sequence[str] = (),
    ) -> tuple[str, TokenRecord]:
        """A new token for `service` admitting `uses` instances (allowing `addresses`);
        the token string is returned once, never stored."""
        return self.create_many(
            [service], ca_pin, namespace=namespace, ttl=ttl, uses=uses, addresses=addresses
        )[0]

    def create_many(
        self,
        services: Sequence[str],
        ca_pin: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        ttl: float = 3600.0,
        uses: int = 1,
        addresses: Sequence[str] = (),
    ) -> list[tuple[str, TokenRecord]]:
        """A new token for each of `services` (in order), each admitting `uses` instances,
        stored with one write of `tokens.json` (one write per token made inject of N
        services quadratic)."""
        allowed = check_request(
            services, namespace=namespace, ttl=ttl, uses=uses, addresses=addresses,
            max_ttl=self.max_ttl,
        )  # fmt: skip
        now = self._clock()
        made: list[tuple[str, TokenRecord]] = []
        with locked(self._lock):
            records = dict(self._read())
            for service in services:
                token, record = mint(
                    service, ca_pin, namespace=namespace, now=now, ttl=ttl, uses=uses,
                    addresses=allowed, taken=records,
                )  # fmt: skip
                records[record.token_id] = record
                made.append((token, record))
            if made:
                self._write(records)
        return made

    def verify(
        self, token: str, *, service: str | None = None, namespace: str | None = None
    ) -> TokenRecord:
        """The record of a valid token, or a TokenError saying why it is refused."""
        parsed = parse_token(token)
        return check_presented(
            self._read().get(parsed.token_id), parsed, self._clock(),
            service=service, namespace=namespace,
        )  # fmt: skip

    def redeem(
        self,
        token: str,
        *,
        instance: str,
        service: str | None = None,
        namespace: str | None = None,
    ) -> TokenRecord:
        """Verify `token` (as `verify`) and take one of its uses for `instance`: an
        instance it already admitted is admitted again without taking another; a new one
        is refused once every use is taken. An empty `instance` (a sidecar too old to
        send its id) takes a new use each time."""
        if len(instance) > MAX_INSTANCE_ID:
            raise TokenMalformed(f"the instance id is longer than {MAX_INSTANCE_ID} characters")
        token_id = self.verify(token, service=service, namespace=namespace).token_id
        if self._uses_path is not None:
            self._uses_path.parent.mkdir(parents=True, exist_ok=True)
        with locked(self._uses_lock or self._lock):
            records = dict(self._read())
            record = records[token_id]
            admitted = admit(record, instance)
            if admitted is None:
                return record
            name = admitted.instances[-1]
            records[token_id] = admitted
            if self._uses_path is None:
                self._write(records)
            else:
                uses = self._read_uses()
                uses[token_id] = [*uses.get(token_id, []), name]
                atomic_write(
                    self._uses_path,
                    json.dumps({"instances": uses}, indent=2) + "\n",
                    mode=0o600,
                )
            return records[token_id]

    def revoke(self, token_id: str) -> TokenRecord:
        with locked(self._lock):
            records = dict(self._read())
            if token_id not in records:
                raise NotFound(f"no join token with id {token_id}", hint="see gossamer token list")
            old = records[token_id]
            records[token_id] = replace(old, revoked=True)
            self._write(records)
            return records[token_id]

    def list(self) -> list[TokenRecord]:
        return sorted(self._read().values(), key=lambda r: r.created)
