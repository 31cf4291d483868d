"""Stream idle and request timeouts (issue 17, finding 6) through xDS both ways: mesh.yaml
-> the control plane's Envoy resources (HCM `stream_idle_timeout`/`request_timeout`,
RouteAction `idle_timeout`) -> the sidecar's ProxyConfig; what the sidecar refuses; and
the pure deadline rule the servers apply."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import any_pb2

from gossamer.contract import xds
from gossamer.control.translate import NodeGroup
from gossamer.errors import ConfigError
from gossamer.proxy.config import NodeInfo, Route, StreamTimeouts, WeightedCluster
from gossamer.proxy.service import Request
from gossamer.proxy.transport.http1.body import BodyStream, RequestBody
from gossamer.proxy.transport.stream_timeouts import IDLE, REQUEST, StreamClock, next_due
from gossamer.proxy.xds import listeners as xds_listeners
from gossamer.proxy.xds.translate import assemble
from tests.helpers.xds_fixtures import POLICIES, TD, key, pieces_of, translator

CATALOG = "outbound|8080||catalog.default"


def _policies(**changes: dict[str, Any]) -> list[dict[str, Any]]:
    """The fixtures' mesh.yaml services with some entries' keys added."""
    out = []
    for entry in POLICIES:
        extra = changes.get(entry["name"], {})
        out.append({**entry, **extra})
    return out


MESH = _policies(
    catalog={"stream_idle_timeout": "2s", "request_timeout": "3500ms"},
    web={"stream_idle_timeout": "0s", "request_timeout": "90s"},
)


def _raw(service: str, policies: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return translator(policies).view(NodeGroup(key(service)))


def _hcm(listener: listener_pb2.Listener) -> list[hcm_pb2.HttpConnectionManager]:
    out = []
    for chain in listener.filter_chains:
        for f in chain.filters:
            manager = hcm_pb2.HttpConnectionManager()
            if f.typed_config.Unpack(manager):
                out.append(manager)
    return out


def _config(service: str, policies: list[dict[str, Any]]) -> Any:
    resources = translator(policies).view(NodeGroup(key(service)))
    packed = {}
    for type_url, by_name in resources.items():
        items = []
        for message in by_name.values():
            item = any_pb2.Any()
            item.Pack(message)
            items.append(item)
        packed[type_url] = items
    return assemble(NodeInfo(service, trust_domain=TD), pieces_of(packed))


# -- control plane: mesh.yaml -> Envoy fields ----------------------------------------------
def test_the_inbound_listener_carries_the_services_timeouts():
    inbound = _raw("catalog", MESH)[xds.LISTENER][xds.INBOUND_LISTENER]
    (manager,) = _hcm(inbound)
    assert manager.stream_idle_timeout.seconds == 2
    assert (manager.request_timeout.seconds, manager.request_timeout.nanos) == (3, 500_000_000)


def test_the_outbound_listener_carries_the_own_services_timeouts_and_routes_the_callees():
    raw = _raw("web", MESH)
    (manager,) = _hcm(raw[xds.LISTENER][xds.OUTBOUND_LISTENER])
    assert manager.HasField("stream_idle_timeout") and manager.stream_idle_timeout.seconds == 0
    assert manager.request_timeout.seconds == 90
    routes = raw[xds.ROUTE][xds.OUTBOUND_ROUTE]
    by_host = {vh.name: vh for vh in routes.virtual_hosts}
    assert by_host["catalog.default:8080"].routes[0].route.idle_timeout.seconds == 2
    assert by_host["legacy.default:7000"].routes[0].route.idle_timeout.seconds == 60  # default
    passthrough = by_host["allow_any"].routes[0].route
    assert not passthrough.HasField("idle_timeout")  # the listener's applies


def test_defaults_are_sixty_seconds_each():
    (manager,) = _hcm(_raw("legacy", POLICIES)[xds.LISTENER][xds.INBOUND_LISTENER])
    assert manager.stream_idle_timeout.seconds == 60 and manager.request_timeout.seconds == 60


def test_proxyless_api_listeners_only_gain_a_route_idle_timeout():
    resources = translator(MESH).view(NodeGroup(None))
    listener = resources[xds.LISTENER]["catalog:8080"]
    assert isinstance(listener, listener_pb2.Listener)
    manager = hcm_pb2.HttpConnectionManager()
    assert listener.api_listener.api_listener.Unpack(manager)
    # gRPC reads neither HCM field (and NACKs none of them); they stay unset here
    assert not manager.HasField("stream_idle_timeout")
    assert not manager.HasField("request_timeout")
    route = manager.route_config.virtual_hosts[0].routes[0].route
    assert route.idle_timeout.seconds == 2


@pytest.mark.parametrize("value", ["-1s", "25h", "soon"])
def test_mesh_yaml_refuses_timeouts_out_of_bounds(value: str):
    with pytest.raises(ConfigError, match="stream_idle_timeout"):
        translator(_policies(catalog={"stream_idle_timeout": value}))


# -- sidecar: Envoy fields -> ProxyConfig ---------------------------------------------------
def test_the_sidecar_decodes_both_listeners_and_the_route_override():
    catalog = _config("catalog", MESH)
    assert catalog.inbound.stream_timeouts == StreamTimeouts(idle=2.0, request=3.5)
    web = _config("web", MESH)
    assert web.listeners.stream_timeouts == StreamTimeouts(idle=0.0, request=90.0)
    hosts = {vh.name: vh for vh in web.routes.virtual_hosts}
    assert hosts["catalog.default:8080"].routes[0].idle_timeout == 2.0


def _listener_with(manager: hcm_pb2.HttpConnectionManager) -> any_pb2.Any:
    listener = listener_pb2.Listener(name=xds.OUTBOUND_LISTENER)
    chain = listener.filter_chains.add()
    f = chain.filters.add(name="envoy.filters.network.http_connection_manager")
    manager.rds.route_config_name = xds.OUTBOUND_ROUTE
    f.typed_config.Pack(manager)
    out = any_pb2.Any()
    out.Pack(listener)
    return out


def test_an_hcm_without_the_fields_gets_envoys_defaults():
    decoded = xds_listeners.decode_listeners([_listener_with(hcm_pb2.HttpConnectionManager())], TD)
    assert decoded.outbound_timeouts == StreamTimeouts(idle=300.0, request=0.0)


def test_a_negative_timeout_is_a_nack():
    manager = hcm_pb2.HttpConnectionManager()
    manager.request_timeout.seconds = -1
    with pytest.raises(ConfigError, match="must not be negative"):
        xds_listeners.decode_listeners([_listener_with(manager)], TD)


def test_inbound_chains_with_different_timeouts_are_a_nack():
    inbound = _raw("inventory", _policies(inventory={"stream_idle_timeout": "5s"}))
    listener = inbound[xds.LISTENER][xds.INBOUND_LISTENER]
    # inventory has one HTTP and one TCP port: give it a second HTTP chain that disagrees
    chain = listener.filter_chains.add()
    chain.CopyFrom(listener.filter_chains[0])
    chain.filter_chain_match.server_names[:] = [
        listener.filter_chains[0].filter_chain_match.server_names[0].replace("9000", "9002")
    ]
    manager = hcm_pb2.HttpConnectionManager()
    chain.filters[0].typed_config.Unpack(manager)
    manager.stream_idle_timeout.seconds = 6
    chain.filters[0].typed_config.Pack(manager)
    packed = any_pb2.Any()
    packed.Pack(listener)
    with pytest.raises(ConfigError, match="different stream timeouts"):
        xds_listeners.decode_listeners([packed], TD)


# -- the deadline rule ------------------------------------------------------------------------
def _request(start: float, body_done: bool | None) -> Request:
    body = None
    if body_done is not None:
        stream = BodyStream()
        if body_done:
            stream.finish()
        body = RequestBody(stream)
    return Request("POST", b"/", "catalog", [], body, start=start)


def test_idle_counts_from_the_last_byte_and_the_route_may_replace_it():
    clock = StreamClock(_request(100.0, True), 100.0)
    clock.active_at = 104.0
    assert next_due(clock, StreamTimeouts(idle=2.0, request=3.0)) == (106.0, IDLE)
    clock.req.route = Route("r", (WeightedCluster(CATALOG),), idle_timeout=10.0)
    assert next_due(clock, StreamTimeouts(idle=2.0)) == (114.0, IDLE)
    clock.req.route = Route("r", (WeightedCluster(CATALOG),), idle_timeout=0.0)
    assert next_due(clock, StreamTimeouts(idle=2.0)) == (float("inf"), b"")


def test_request_timeout_applies_while_the_body_arrives_and_no_answer_started():
    clock = StreamClock(_request(100.0, False), 100.0)
    clock.active_at = 104.5  # a byte every half second keeps it from being idle...
    assert next_due(clock, StreamTimeouts(idle=2.0, request=3.0)) == (103.0, REQUEST)
    clock.req.body.stream.finish()  # type: ignore[union-attr]
    assert next_due(clock, StreamTimeouts(idle=2.0, request=3.0)) == (106.5, IDLE)
    unfinished = StreamClock(_request(100.0, False), 100.0)
    unfinished.response = object()  # type: ignore[assignment]
    assert next_due(unfinished, StreamTimeouts(idle=0.0, request=3.0)) == (float("inf"), b"")
