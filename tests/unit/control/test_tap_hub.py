"""The control plane's tap hub (control/tap_hub.py) and /v1/tap's parameters (tap_api.py)."""

from __future__ import annotations

import pytest

from gossamer.contract import mesh_pb2
from gossamer.control.tap_api import parse_spec, record_json
from gossamer.control.tap_hub import SidecarLink, TapHub, TapSpec, TooManyTaps
from gossamer.errors import ConfigError
from tests.helpers.control_metrics import control_metrics_text


def drain(link: SidecarLink) -> list[mesh_pb2.TapCommand]:
    out: list[mesh_pb2.TapCommand] = []
    while not link.commands.empty():
        command = link.commands.get_nowait()
        assert command is not None
        out.append(command)
    return out


async def test_open_fans_out_to_the_service_and_late_joiners() -> None:
    hub = TapHub("td")
    web1 = hub.connect("web", "default", "web-1")
    other = hub.connect("catalog", "default", "catalog-1")
    tap = hub.open(TapSpec("web", to="catalog", path_prefix="/a", rate=7))
    (cmd,) = drain(web1)
    assert cmd.open.id == tap.id and cmd.open.to == "catalog" and cmd.open.rate == 7
    assert drain(other) == []
    web2 = hub.connect("web", "default", "web-2")  # connects while the tap is open
    assert [c.open.id for c in drain(web2)] == [tap.id]
    assert hub.sidecars(tap.spec) == 2
    hub.close(tap)
    assert [c.close for c in drain(web1)] == [tap.id]
    assert [c.close for c in drain(web2)] == [tap.id]
    hub.close(tap)  # twice: nothing more
    assert drain(web1) == []
    assert drain(hub.connect("web", "default", "web-3")) == []  # closed: not sent


async def test_namespace_selects() -> None:
    hub = TapHub("td")
    a = hub.connect("web", "a", "1")
    b = hub.connect("web", "b", "2")
    hub.open(TapSpec("web", namespace="b"))
    assert drain(a) == [] and len(drain(b)) == 1


async def test_deliver_only_to_the_tap_of_that_service_and_counts_drops() -> None:
    hub = TapHub("td")
    web = hub.connect("web", "default", "w")
    intruder = hub.connect("vault", "default", "v")
    tap = hub.open(TapSpec("web"))
    rec = mesh_pb2.TapRecord(direction="inbound", path="/x", status=200)
    hub.deliver(web, mesh_pb2.TapReport(tap_id=tap.id, records=[rec, rec], dropped=3))
    hub.deliver(intruder, mesh_pb2.TapReport(tap_id=tap.id, records=[rec]))
    hub.deliver(web, mesh_pb2.TapReport(tap_id="unknown", records=[rec]))
    assert tap.records.qsize() == 2 and tap.received == 2 and tap.dropped == 3
    assert tap.wake.is_set()


async def test_deliver_sets_the_sidecars_own_side_from_its_certificate() -> None:
    hub = TapHub("td")
    dev = hub.connect("web", "dev", "w")  # a web sidecar in namespace dev
    tap = hub.open(TapSpec("web"))  # no namespace: any web
    lie = "spiffe://td/ns/prod/sa/web"
    records = [
        mesh_pb2.TapRecord(direction="inbound", source="spiffe://td/ns/dev/sa/a", destination=lie),
        mesh_pb2.TapRecord(direction="outbound", source=lie, destination="spiffe://td/ns/x/sa/b"),
        mesh_pb2.TapRecord(direction="sideways", source=lie, destination=lie),
    ]
    hub.deliver(dev, mesh_pb2.TapReport(tap_id=tap.id, records=records))
    inbound, outbound = tap.records.get_nowait(), tap.records.get_nowait()
    assert inbound.destination == "spiffe://td/ns/dev/sa/web"
    assert inbound.source == "spiffe://td/ns/dev/sa/a"  # the peer's side: as measured
    assert outbound.source == "spiffe://td/ns/dev/sa/web"
    assert outbound.destination == "spiffe://td/ns/x/sa/b"
    assert tap.records.empty() and tap.dropped == 1  # no direction: not taken


async def test_shutdown_wakes_every_open_tap() -> None:
    hub = TapHub("td")
    taps = [hub.open(TapSpec("web")), hub.open(TapSpec("catalog"))]
    hub.shutdown()
    assert hub.closing and all(t.wake.is_set() for t in taps)


async def test_at_most_max_taps() -> None:
    hub = TapHub("td", max_taps=2)
    first = hub.open(TapSpec("web"))
    hub.open(TapSpec("web"))
    with pytest.raises(TooManyTaps):
        hub.open(TapSpec("web"))
    hub.close(first)
    hub.open(TapSpec("web"))


def test_parse_spec() -> None:
    spec, limit = parse_spec(
        {"service": "web.prod", "to": "catalog", "path": "/a", "method": "post", "max": "5"}
    )
    assert spec == TapSpec("web", "prod", "", "catalog", "/a", "POST", 0) and limit == 5
    assert parse_spec({"service": "web"}) == (TapSpec("web"), 0)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({}, "service"),
        ({"service": "Web!"}, "service"),
        ({"service": "web", "colour": "red"}, "colour"),
        ({"service": "web", "path": "a"}, "path"),
        ({"service": "web", "max": "0"}, "max"),
        ({"service": "web", "max": "x"}, "max"),
        ({"service": "web", "max": "\u00b2"}, "max"),  # superscript two: isdigit(), not int()
        ({"service": "web", "max": "\u0661\u0662"}, "max"),  # Arabic-Indic 12
        ({"service": "web", "rate": "101"}, "rate"),
        ({"service": "web", "method": "GET /"}, "method"),
        ({"service": "web", "direction": "sideways"}, "direction"),
        ({"service": "web", "to": "a b"}, "to"),
    ],
)
def test_parse_spec_names_the_bad_parameter(query: dict[str, str], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_spec(query)
    assert info.value.field == field


def test_record_json_fields() -> None:
    r = record_json(mesh_pb2.TapRecord(ts=1.5, direction="inbound", path="/", bytes=-1))
    assert set(r) == {"ts", "direction", "source", "destination", "method", "authority",
                      "path", "status", "latency_ms", "bytes", "trace_id", "sampled"}  # fmt: skip
    assert r["bytes"] is None and r["trace_id"] is None and r["source"] is None


async def test_counts_for_metrics() -> None:
    hub = TapHub("td")
    hub.connect("web", "default", "w")
    hub.close(hub.open(TapSpec("web")))
    hub.open(TapSpec("web"))
    assert hub.counts() == (1, 1, 2)
    text = control_metrics_text(taps=hub.counts)
    assert "gossamer_control_taps_open 1.0" in text
    assert "gossamer_control_tap_streams 1.0" in text
    assert "gossamer_control_taps_opened_total 2.0" in text
