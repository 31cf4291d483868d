"""The etcd key layout and the decoding of watch events and range reads."""

from __future__ import annotations

import pytest

from gossamer.contract.identity import ServiceKey
from gossamer.discovery import etcd_keys as ek
from gossamer.discovery.model import Endpoint, EventKind, Service
from gossamer.errors import ConfigError

KEY = ServiceKey("prod", "catalog")
LAYOUT = ek.KeyLayout("/mesh/a")


def test_keys_and_parsing_round_trip():
    assert LAYOUT.service(KEY) == b"/mesh/a/services/prod/catalog"
    assert LAYOUT.endpoint(KEY, "pod/7") == b"/mesh/a/endpoints/prod/catalog/pod/7"
    assert LAYOUT.parse(LAYOUT.service(KEY)) == ("service", KEY, None)
    assert LAYOUT.parse(LAYOUT.endpoint(KEY, "pod/7")) == ("endpoint", KEY, "pod/7")
    assert LAYOUT.root == b"/mesh/a/"
    for foreign in (
        b"/mesh/ab/services/x/y",
        b"/mesh/a/other/x",
        b"/mesh/a/endpoints/x/y/",
        b"\xff",
    ):
        assert LAYOUT.parse(foreign) is None


@pytest.mark.parametrize("prefix", ["", "gossamer", "/a/", "/a b", "//a"])
def test_bad_prefixes(prefix: str):
    with pytest.raises(ConfigError) as info:
        ek.KeyLayout(prefix)
    assert info.value.field == "prefix"


def test_decode_events():
    svc = Service("catalog", "prod")
    ep = Endpoint(KEY, "i1", "10.0.0.1", 80, owner="lease:5", mtls=True)
    put = ek.decode_event(LAYOUT, True, LAYOUT.service(KEY), ek.encode_service(svc), 9)
    assert put is not None and put.kind == EventKind.PUT_SERVICE and put.service == svc
    put_ep = ek.decode_event(LAYOUT, True, LAYOUT.endpoint(KEY, "i1"), ek.encode_endpoint(ep), 10)
    assert put_ep is not None and put_ep.endpoint == ep and put_ep.instance_id == "i1"
    gone = ek.decode_event(LAYOUT, False, LAYOUT.endpoint(KEY, "i1"), b"", 11)
    assert gone is not None and (gone.kind, gone.key, gone.instance_id, gone.revision) == (
        EventKind.DELETE_ENDPOINT,
        KEY,
        "i1",
        11,
    )
    assert ek.decode_event(LAYOUT, True, b"/elsewhere", b"{}", 1) is None
    with pytest.raises(ek.BadValue):
        ek.decode_event(LAYOUT, True, LAYOUT.service(KEY), b"not json", 12)


def test_decode_state_skips_what_is_not_a_record():
    svc = Service("catalog", "prod")
    ep = Endpoint(KEY, "i1", "10.0.0.1", 80)
    state, skipped = ek.decode_state(
        LAYOUT,
        33,
        [
            (LAYOUT.service(KEY), ek.encode_service(svc)),
            (LAYOUT.endpoint(KEY, "i1"), ek.encode_endpoint(ep)),
            (LAYOUT.endpoint(KEY, "i2"), b"garbage"),
            (b"/mesh/a/junk", b"x"),
        ],
    )
    assert state.revision == 33 and state.services == {KEY: svc}
    assert state.endpoints == {(KEY, "i1"): ep}
    assert skipped == ["/mesh/a/endpoints/prod/catalog/i2", "/mesh/a/junk"]
