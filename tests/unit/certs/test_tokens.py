"""Join tokens: scope, expiry, revocation, tampering; only hashes on disk."""

from __future__ import annotations

import json
import stat

import pytest

from gossamer.certs import errors
from gossamer.certs.token_rules import parse_token
from gossamer.certs.tokens import TokenStore
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


def test_a_token_admits_one_instance_and_that_instance_again(store, clock):
    token, record = store.create("web", PIN)
    assert record.uses == 1 and record.public(clock.now)["status"] == "valid"
    assert store.redeem(token, instance="web-1", service="web").instances == ("web-1",)
    assert store.redeem(token, instance="web-1").instances == ("web-1",)  # a restart
    with pytest.raises(errors.TokenUsedUp, match="already admitted 1 instance"):
        store.redeem(token, instance="web-2")
    shown = store.list()[0].public(clock.now)
    assert (shown["status"], shown["uses"], shown["used"]) == ("used", 1, 1)


def test_uses_go_to_the_data_directory_and_the_ca_directory_is_not_written(tmp_path, clock):
    """In Compose the CA directory is a read-only secret: redeeming must not write it."""
    ca_dir, data_dir = tmp_path / "ca", tmp_path / "data"
    ca_dir.mkdir()
    token, _ = TokenStore(ca_dir, clock=clock).create("web", PIN)
    before = {p.name: p.read_bytes() for p in ca_dir.iterdir()}
    control = TokenStore(ca_dir, clock=clock, uses_dir=data_dir)
    assert control.redeem(token, instance="web-1").instances == ("web-1",)
    assert {p.name: p.read_bytes() for p in ca_dir.iterdir()} == before
    again = TokenStore(ca_dir, clock=clock, uses_dir=data_dir)  # e.g. after a restart
    assert again.redeem(token, instance="web-1").instances == ("web-1",)
    with pytest.raises(errors.TokenUsedUp):
        again.redeem(token, instance="web-2")
    assert again.list()[0].instances == ("web-1",)


def test_reusable_and_unnamed_instances(store):
    token, _ = store.create("web", PIN, uses=2)
    store.redeem(token, instance="")
    store.redeem(token, instance="")  # no id: a new use each time
    with pytest.raises(errors.TokenUsedUp):
        store.redeem(token, instance="")


@pytest.mark.parametrize("uses", [0, -1, 10_001, True, "2"])
def test_uses_bounds(store, uses):
    with pytest.raises(ConfigError, match="admits 1 to 10000"):
        store.create("web", PIN, uses=uses)


def test_redeem_checks_like_verify(store, clock):
    token, record = store.create("web", PIN, ttl=60)
    with pytest.raises(errors.TokenWrongService):
        store.redeem(token, instance="a", service="catalog")
    store.revoke(record.token_id)
    with pytest.raises(errors.TokenRevoked):
        store.redeem(token, instance="a")
    with pytest.raises(errors.TokenMalformed, match="instance id"):
        store.redeem(token, instance="x" * 254)
    assert store.list()[0].instances == ()


def test_records_from_before_use_counts_stay_unlimited(store, tmp_path):
    token, _ = store.create("web", PIN)
    path = tmp_path / "tokens.json"
    body = json.loads(path.read_text())
    for raw in body["tokens"]:
        del raw["uses"], raw["instances"]
    path.write_text(json.dumps(body))
    for n in range(3):
        assert store.redeem(token, instance=f"i{n}").instances == ()
    assert store.list()[0].public()["uses"] is None


def test_max_ttl_refuses_longer_tokens(tmp_path, clock):
    capped = TokenStore(tmp_path, clock=clock, max_ttl=86400)
    with pytest.raises(ConfigError, match="at most 24h, not 48h"):
        capped.create("web", PIN, ttl=2 * 86400)
    assert capped.create("web", PIN, ttl=86400)[1].expires == clock.now + 86400
