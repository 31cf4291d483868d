"""SPIFFE IDs of the wire contract: format, parse, and how authorization entries match."""

from __future__ import annotations

from gossamer.contract.identity import ServiceKey, parse_spiffe_id, spiffe_id, spiffe_matches

TD = "gossamer.local"


def test_format_and_parse_round_trip() -> None:
    key = ServiceKey("shop", "web")
    assert spiffe_id(TD, key) == "spiffe://gossamer.local/ns/shop/sa/web"
    assert parse_spiffe_id(spiffe_id(TD, key)) == (TD, key)
    for bad in ("spiffe://td/ns/a", "http://td/ns/a/sa/b", "spiffe:///ns/a/sa/b", "x"):
        assert parse_spiffe_id(bad) is None


def test_entries_match_exactly_or_by_star_prefix() -> None:
    web = "spiffe://gossamer.local/ns/shop/sa/web"
    assert spiffe_matches(web, web)
    assert not spiffe_matches(web, web + "x")
    assert spiffe_matches("spiffe://gossamer.local/ns/shop/sa/*", web)
    assert not spiffe_matches("spiffe://gossamer.local/ns/other/sa/*", web)
    assert spiffe_matches("*", web)
