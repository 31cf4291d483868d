"""Join tokens: how a new sidecar proves which service it is, once, to get certified.

A token reads `gst1.<id>.<secret>.sha256:<hex>`: an id to look the record up, a 160-bit
random secret, and the pin of the CA root's SubjectPublicKeyInfo (as kubeadm's discovery
hash) so the sidecar can verify the control plane at first contact. The store
(`tokens.json` in the CA directory, mode 0600) keeps only a SHA-256 hash of the secret;
verification compares hashes in constant time and checks expiry, revocation and scope
(one service in one namespace).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gossamer.certs.errors import (
    TokenExpired,
    TokenMalformed,
    TokenRevoked,
    TokenUnknown,
    TokenWrongService,
)
from gossamer.contract.identity import DEFAULT_NAMESPACE, check_label, is_control_identity
from gossamer.errors import ConfigError, NotFound
from gossamer.fsutil import atomic_write, locked

PREFIX = "gst1"
TOKENS_FILE = "tokens.json"
_TOKEN = re.compile(r"^gst1\.([a-z0-9]{8})\.([a-z2-7]{32})\.(sha256:[0-9a-f]{64})$")


@dataclass(frozen=True)
class ParsedToken:
    token_id: str
    secret: str
    ca_pin: str


@dataclass(frozen=True)
class TokenRecord:
    token_id: str
    service: str
    namespace: str
    secret_sha256: str
    ca_pin: str
    created: float
    expires: float
    revoked: bool = False

    def public(self, now: float | None = None) -> dict[str, Any]:
        """What may be shown to an operator: everything but the secret's hash."""
        current = time.time() if now is None else now
        if self.revoked:
            status = "revoked"
        elif current >= self.expires:
            status = "expired"
        else:
            status = "valid"
        return {
            "id": self.token_id,
            "service": self.service,
            "namespace": self.namespace,
            "created": self.created,
            "expires": self.expires,
            "status": status,
        }


def parse_token(token: str) -> ParsedToken:
    match = _TOKEN.match(token.strip()) if isinstance(token, str) else None
    if match is None:
        raise TokenMalformed(
            "not a Gossamer join token",
            hint="tokens look like gst1.<id>.<secret>.sha256:<pin>; create one with "
            "gossamer token create --service S",
        )
    return ParsedToken(match.group(1), match.group(2), match.group(3))


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class TokenStore:
    """Join tokens kept in `<directory>/tokens.json`; safe across processes."""

    def __init__(self, directory: str | Path, *, clock: Callable[[], float] = time.time):
        self.path = Path(directory) / TOKENS_FILE
        self._lock = Path(directory) / ".tokens.lock"
        self._clock = clock
        self._cache: tuple[tuple[int, int], dict[str, TokenRecord]] | None = None

    def _read(self) -> dict[str, TokenRecord]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return {}
        stamp = (st.st_ino, st.st_mtime_ns)
        if self._cache is not None and self._cache[0] == stamp:
            return self._cache[1]
        raw = json.loads(self.path.read_text())
        records = {r["token_id"]: TokenRecord(**r) for r in raw.get("tokens", [])}
        self._cache = (stamp, records)
        return records

    def _write(self, records: dict[str, TokenRecord]) -> None:
        body = {"tokens": [asdict(r) for r in records.values()]}
        atomic_write(self.path, json.dumps(body, indent=2) + "\n", mode=0o600)
        self._cache = None

    def create(
        self, service: str, ca_pin: str, *, namespace: str = DEFAULT_NAMESPACE, ttl: float = 3600.0
    ) -> tuple[str, TokenRecord]:
        """A new token for `service`; the token string is returned once, never stored."""
        return self.create_many([service], ca_pin, namespace=namespace, ttl=ttl)[0]

    def create_many(
        self,
        services: Sequence[str],
        ca_pin: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        ttl: float = 3600.0,
    ) -> list[tuple[str, TokenRecord]]:
        """A new token for each of `services` (in order), stored with one write of
        `tokens.json` (one write per token made inject of N services quadratic)."""
        for service in services:
            check_label(service, "service")
            if is_control_identity(namespace, service):
                raise ConfigError(
                    f"{service}.{namespace} is the control plane's own identity: "
                    "no join token may carry it",
                    field="service",
                )
        check_label(namespace, "namespace")
        if ttl <= 0:
            raise TokenMalformed("the token lifetime must be positive")
        now = self._clock()
        made: list[tuple[str, TokenRecord]] = []
        with locked(self._lock):
            records = dict(self._read())
            for service in services:
                token_id = secrets.token_hex(4)
                while token_id in records:
                    token_id = secrets.token_hex(4)
                secret = base64.b32encode(secrets.token_bytes(20)).decode().lower()
                record = TokenRecord(
                    token_id, service, namespace, _hash(secret), ca_pin, now, now + ttl
                )
                records[token_id] = record
                made.append((f"{PREFIX}.{token_id}.{secret}.{ca_pin}", record))
            if made:
                self._write(records)
        return made

    def verify(
        self, token: str, *, service: str | None = None, namespace: str | None = None
    ) -> TokenRecord:
        """The record of a valid token, or a TokenError saying why it is refused."""
        parsed = parse_token(token)
        record = self._read().get(parsed.token_id)
        presented = _hash(parsed.secret)
        expected = record.secret_sha256 if record else _hash("no such token")
        secret_ok = hmac.compare_digest(presented, expected)
        pin_ok = hmac.compare_digest(parsed.ca_pin, record.ca_pin if record else "")
        if record is None or not secret_ok or not pin_ok:
            raise TokenUnknown("unknown or altered join token")
        if record.revoked:
            raise TokenRevoked(f"join token {record.token_id} was revoked")
        if self._clock() >= record.expires:
            raise TokenExpired(f"join token {record.token_id} has expired")
        if (service is not None and service != record.service) or (
            namespace is not None and namespace != record.namespace
        ):
            raise TokenWrongService(
                f"join token {record.token_id} is for {record.service}.{record.namespace}, "
                f"not {service}.{namespace or record.namespace}"
            )
        return record

    def revoke(self, token_id: str) -> TokenRecord:
        with locked(self._lock):
            records = dict(self._read())
            if token_id not in records:
                raise NotFound(f"no join token with id {token_id}", hint="see gossamer token list")
            old = records[token_id]
            records[token_id] = TokenRecord(**{**asdict(old), "revoked": True})
            self._write(records)
            return records[token_id]

    def list(self) -> list[TokenRecord]:
        return sorted(self._read().values(), key=lambda r: r.created)
