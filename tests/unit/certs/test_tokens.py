"""Join tokens: scope, expiry, revocation, tampering; only hashes on disk."""

from __future__ import annotations

import json
import stat

import pytest

from gossamer.certs import errors
from gossamer.certs.tokens import TokenStore, parse_token
from gossamer.errors import ConfigError, NotFound

PIN = "sha256:" + "ab" * 32


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(tmp_path, clock):
    return TokenStore(tmp_path, clock=clock)


def test_create_and_verify(store):
    token, record = store.create("web", PIN, ttl=3600)
    parsed = parse_token(token)
    assert parsed.ca_pin == PIN and parsed.token_id == record.token_id
    assert store.verify(token, service="web", namespace="default").service == "web"


def test_only_hash_stored_with_0600(store, tmp_path):
    token, _ = store.create("web", PIN)
    secret = parse_token(token).secret
    text = (tmp_path / "tokens.json").read_text()
    assert secret not in text
    assert stat.S_IMODE((tmp_path / "tokens.json").stat().st_mode) == 0o600
    assert json.loads(text)["tokens"][0]["secret_sha256"]


def test_wrong_service_and_namespace(store):
    token, _ = store.create("web", PIN, namespace="shop")
    with pytest.raises(errors.TokenWrongService):
        store.verify(token, service="catalog", namespace="shop")
    with pytest.raises(errors.TokenWrongService):
        store.verify(token, service="web", namespace="default")


def test_expired(store, clock):
    token, _ = store.create("web", PIN, ttl=60)
    clock.now += 59
    store.verify(token, service="web")
    clock.now += 1
    with pytest.raises(errors.TokenExpired):
        store.verify(token, service="web")


def test_revoked(store):
    token, record = store.create("web", PIN)
    store.revoke(record.token_id)
    with pytest.raises(errors.TokenRevoked):
        store.verify(token, service="web")
    assert store.list()[0].public()["status"] == "revoked"
    with pytest.raises(NotFound):
        store.revoke("00000000")


def flip(text: str, index: int) -> str:
    ch = text[index]
    repl = "a" if ch != "a" else "b"
    return text[:index] + repl + text[index + 1 :]


def test_tampered_tokens(store):
    token, _ = store.create("web", PIN)
    prefix, tid, secret, pin = token.split(".")
    tampered = [
        f"{prefix}.{tid}.{flip(secret, 0)}.{pin}",  # secret
        f"{prefix}.{flip(tid, 0)}.{secret}.{pin}",  # id
        f"{prefix}.{tid}.{secret}.{flip(pin, len(pin) - 1)}",  # CA pin
    ]
    for bad in tampered:
        with pytest.raises(errors.TokenUnknown):
            store.verify(bad, service="web")
    for garbage in ("", "gst1", token + "x", token.replace("gst1", "gst2"), "a.b.c.d"):
        with pytest.raises(errors.TokenMalformed):
            store.verify(garbage, service="web")


def test_all_refusals_are_token_errors():
    for kind in (
        errors.TokenMalformed,
        errors.TokenUnknown,
        errors.TokenExpired,
        errors.TokenRevoked,
        errors.TokenWrongService,
    ):
        assert issubclass(kind, errors.TokenError)


def test_invalid_scope_rejected(store):
    with pytest.raises(ConfigError):
        store.create("Not_A_Label", PIN)


def test_second_store_sees_changes(tmp_path, clock):
    a = TokenStore(tmp_path, clock=clock)
    b = TokenStore(tmp_path, clock=clock)
    token, record = a.create("web", PIN)
    assert b.verify(token).token_id == record.token_id
    a.revoke(record.token_id)
    with pytest.raises(errors.TokenRevoked):
        b.verify(token)


def test_list_has_no_secrets(store):
    store.create("web", PIN)
    for record in store.list():
        public = record.public()
        assert "secret_sha256" not in public and set(public) >= {"id", "service", "status"}
