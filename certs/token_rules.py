"""Join tokens without I/O: the token's form, its record, and the rules for making,
presenting and using one (certs/tokens.py describes them and keeps the files; the
control plane's etcd store, control/etcd_security.py, applies the same rules)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from gossamer.certs.errors import (
    TokenExpired,
    TokenMalformed,
    TokenRevoked,
    TokenUnknown,
    TokenUsedUp,
    TokenWrongService,
)
from gossamer.certs.sans import check_addresses
from gossamer.contract.identity import check_label, is_control_identity
from gossamer.durations import format_duration
from gossamer.errors import ConfigError

PREFIX = "gst1"
MAX_USES = 10_000  # instances one token may admit
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
    uses: int = 0  # instances it admits; 0: unlimited (a record from before use counts)
    instances: tuple[str, ...] = ()  # the instance ids it has admitted, in order
    addresses: tuple[str, ...] = ()  # IP addresses / host names its leaves carry as SANs

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> TokenRecord:
        return cls(
            **{
                **raw,
                "instances": tuple(raw.get("instances", ())),
                "addresses": tuple(raw.get("addresses", ())),
            }
        )

    @property
    def used_up(self) -> bool:
        """True once it has admitted as many instances as it allows."""
        return bool(self.uses) and len(self.instances) >= self.uses

    def public(self, now: float | None = None) -> dict[str, Any]:
        """What may be shown to an operator: everything but the secret's hash."""
        current = time.time() if now is None else now
        if self.revoked:
            status = "revoked"
        elif current >= self.expires:
            status = "expired"
        elif self.used_up:
            status = "used"  # its instances may still restart with it, no new one
        else:
            status = "valid"
        return {
            "id": self.token_id,
            "service": self.service,
            "namespace": self.namespace,
            "created": self.created,
            "expires": self.expires,
            "status": status,
            "uses": self.uses or None,
            "used": len(self.instances),
            "addresses": list(self.addresses),
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


def check_uses(uses: int) -> int:
    """`uses` if it is a number of instances a token may admit (1 to MAX_USES)."""
    if isinstance(uses, bool) or not isinstance(uses, int) or not 1 <= uses <= MAX_USES:
        raise ConfigError(
            f"a join token admits 1 to {MAX_USES} instances, not {uses!r}", field="reusable"
        )
    return uses


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_request(
    services: Sequence[str],
    *,
    namespace: str,
    ttl: float,
    uses: int,
    addresses: Sequence[str],
    max_ttl: float | None,
) -> tuple[str, ...]:
    """Refuse a request for tokens that may not be made; the addresses it may allow."""
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
    if max_ttl is not None and ttl > max_ttl:
        raise ConfigError(
            f"a join token may live at most {format_duration(max_ttl)}, not {format_duration(ttl)}",
            field="ttl",
            hint="ask for a shorter ttl, or raise control.max_token_ttl in mesh.yaml",
        )
    check_uses(uses)
    return check_addresses(addresses)


def mint(
    service: str,
    ca_pin: str,
    *,
    namespace: str,
    now: float,
    ttl: float,
    uses: int,
    addresses: tuple[str, ...],
    taken: Mapping[str, object],
) -> tuple[str, TokenRecord]:
    """A new token string and its record (only the secret's hash); `taken`: ids in use."""
    token_id = secrets.token_hex(4)
    while token_id in taken:
        token_id = secrets.token_hex(4)
    secret = base64.b32encode(secrets.token_bytes(20)).decode().lower()
    record = TokenRecord(
        token_id, service, namespace, _hash(secret), ca_pin, now, now + ttl,
        uses=uses, addresses=addresses,
    )  # fmt: skip
    return f"{PREFIX}.{token_id}.{secret}.{ca_pin}", record


def check_presented(
    record: TokenRecord | None,
    parsed: ParsedToken,
    now: float,
    *,
    service: str | None = None,
    namespace: str | None = None,
) -> TokenRecord:
    """`record` if the presented token matches it and may be used now, else a TokenError
    saying why (the secret's hash and the pin are compared in constant time)."""
    presented = _hash(parsed.secret)
    expected = record.secret_sha256 if record else _hash("no such token")
    secret_ok = hmac.compare_digest(presented, expected)
    pin_ok = hmac.compare_digest(parsed.ca_pin, record.ca_pin if record else "")
    if record is None or not secret_ok or not pin_ok:
        raise TokenUnknown("unknown or altered join token")
    if record.revoked:
        raise TokenRevoked(f"join token {record.token_id} was revoked")
    if now >= record.expires:
        raise TokenExpired(f"join token {record.token_id} has expired")
    if (service is not None and service != record.service) or (
        namespace is not None and namespace != record.namespace
    ):
        raise TokenWrongService(
            f"join token {record.token_id} is for {record.service}.{record.namespace}, "
            f"not {service}.{namespace or record.namespace}"
        )
    return record


def admit(record: TokenRecord, instance: str) -> TokenRecord | None:
    """The record with `instance` taking one of its uses; None when nothing changes (no
    use count, or an instance it already admitted); TokenUsedUp when every use is taken."""
    if record.revoked:  # revoked since it was verified
        raise TokenRevoked(f"join token {record.token_id} was revoked")
    if not record.uses or (instance and instance in record.instances):
        return None
    if record.used_up:
        raise TokenUsedUp(
            f"join token {record.token_id} has already admitted {len(record.instances)} "
            f"instance(s), all it allows",
            hint="create a new token (gossamer token create --service S), or "
            "--reusable N for a token that admits N instances",
        )
    name = instance or f"(unnamed {len(record.instances) + 1})"
    return replace(record, instances=(*record.instances, name))
