"""parse_head refuses a second Host header (RFC 9112 §3.2); the server answers 400."""

from __future__ import annotations

import pytest

from gossamer.proxy.transport.http1.wire import parse_head


def test_one_host_is_kept() -> None:
    head = parse_head([(b"Host", b"catalog:8080"), (b"accept", b"*/*")])
    assert head.host == b"catalog:8080"
    assert head.headers == [(b"accept", b"*/*")]


@pytest.mark.parametrize("second", [b"evil.example", b"catalog:8080"])
def test_a_second_host_is_an_error(second: bytes) -> None:
    with pytest.raises(ValueError, match="more than one Host"):
        parse_head([(b"Host", b"catalog:8080"), (b"HOST", second)])
