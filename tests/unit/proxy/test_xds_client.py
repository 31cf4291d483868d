"""The xDS client's handling of responses (no I/O): warming, ACK after apply, NACK
with the error and the last good configuration kept, trust bundles, metrics."""

from __future__ import annotations

import json
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2

from gossamer.contract import xds
from gossamer.control.translate import NodeGroup
from gossamer.errors import ConfigError
from gossamer.proxy.config import NodeInfo, ProxyConfig
from gossamer.proxy.telemetry.metrics import SidecarMetrics
from gossamer.proxy.xds.client import XdsClient
from gossamer.proxy.xds.translate import TrustBundle
from tests.helpers.xds_fixtures import TD, key, make_ca_bundle, translator


class NoChannels:
    def acquire(self) -> Any:
        raise AssertionError("no I/O in these tests")

    async def release(self, channel: Any) -> None:
        raise AssertionError("no I/O in these tests")

    def failed(self, channel: Any, status: str) -> bool:
        raise AssertionError("no I/O in these tests")

    def succeeded(self, channel: Any) -> None:
        raise AssertionError("no I/O in these tests")

    def retry_delay(self, attempt: int, rng: Any, cap: float) -> float:
        raise AssertionError("no I/O in these tests")


class Harness:
    def __init__(self, fail_apply: bool = False) -> None:
        self.applied: list[ProxyConfig] = []
        self.bundles: list[TrustBundle] = []
        self.fail_apply = fail_apply
        self.metrics = SidecarMetrics()
        self.client = XdsClient(
            NodeInfo("web", trust_domain=TD),
            "web-1",
            channels=NoChannels(),
            apply=self.apply,
            on_bundle=self.bundles.append,
            metrics=self.metrics,
        )

    def apply(self, config: ProxyConfig) -> None:
        if self.fail_apply:
            raise ConfigError("the data path refuses it")
        self.applied.append(config)

    def send(self, type_url: str, resources: list[Any], version: str, nonce: str) -> list[Any]:
        packed = []
        for message in resources:
            item = any_pb2.Any()
            item.Pack(message)
            packed.append(item)
        response = discovery_pb2.DiscoveryResponse(
            version_info=version, nonce=nonce, type_url=type_url, resources=packed
        )
        return self.client.handle(response)


def web_view(bundle: bytes | None = None) -> dict[str, list[Any]]:
    view = translator(bundle=bundle).view(NodeGroup(key("web")))
    return {t: list(by_name.values()) for t, by_name in view.items()}


def test_first_configuration_waits_for_every_piece_then_acks_each():
    h = Harness()
    view = web_view()
    first = h.client.state.initial_requests()
    assert [r.type_url for r in first] == [xds.CLUSTER, xds.LISTENER, xds.SECRET]
    assert first[0].node.metadata["GOSSAMER_SERVICE"] == "web"
    out = h.send(xds.CLUSTER, view[xds.CLUSTER], "c1", "n1")
    ack, eds = out
    assert ack.version_info == "c1" and ack.response_nonce == "n1"
    assert not ack.HasField("error_detail")
    assert "outbound|8080||catalog.default" in eds.resource_names  # EDS follows CDS
    assert h.applied == []  # clusters alone are not a configuration
    h.send(xds.ENDPOINT, view[xds.ENDPOINT], "e1", "n2")
    out = h.send(xds.LISTENER, view[xds.LISTENER], "l1", "n3")
    assert list(out[1].resource_names) == [xds.OUTBOUND_ROUTE]
    assert h.applied == []  # the routes are still missing
    h.send(xds.ROUTE, view[xds.ROUTE], "r1", "n4")
    (config,) = h.applied
    assert dict(config.versions) == {"CDS": "c1", "EDS": "e1", "LDS": "l1", "RDS": "r1"}
    assert h.metrics.xds_updates == {"CDS": 1, "EDS": 1, "LDS": 1, "RDS": 1}
    assert h.client.status()["waiting_for"] == []
    # a later endpoint update applies at once
    h.send(xds.ENDPOINT, view[xds.ENDPOINT], "e2", "n5")
    assert len(h.applied) == 2 and h.applied[-1].versions["EDS"] == "e2"


def _complete(h: Harness) -> dict[str, list[Any]]:
    view = web_view()
    for i, t in enumerate((xds.CLUSTER, xds.ENDPOINT, xds.LISTENER, xds.ROUTE)):
        h.send(t, view[t], f"v{i}", f"n{i}")
    return view


def test_nack_keeps_the_last_good_configuration():
    h = Harness()
    view = _complete(h)
    good = h.applied[-1]
    bad = cluster_pb2.Cluster()
    bad.CopyFrom(view[xds.CLUSTER][0])
    bad.type = cluster_pb2.Cluster.LOGICAL_DNS
    (nack,) = h.send(xds.CLUSTER, [*view[xds.CLUSTER][1:], bad], "v9", "n9")
    assert nack.version_info == "v0"  # still the accepted version
    assert nack.response_nonce == "n9"
    assert "LOGICAL_DNS" in nack.error_detail.message
    assert h.applied[-1] is good
    assert h.metrics.xds_nacks == {"CDS": 1}
    status = h.client.status()["types"]["CDS"]
    assert status["nacks"] == 1 and "LOGICAL_DNS" in status["last_nack_error"]
    assert status["version"] == "v0"
    # the next good update is accepted and clears the error
    h.send(xds.CLUSTER, view[xds.CLUSTER], "v10", "n10")
    assert h.client.status()["types"]["CDS"]["last_nack_error"] is None
    assert h.applied[-1].versions["CDS"] == "v10"


def test_what_the_data_path_refuses_is_nacked():
    h = Harness(fail_apply=True)
    view = web_view()
    for t in (xds.CLUSTER, xds.ENDPOINT, xds.LISTENER):
        h.send(t, view[t], "v1", "n")
    (nack,) = h.send(xds.ROUTE, view[xds.ROUTE], "r1", "n4")
    assert "the data path refuses it" in nack.error_detail.message
    assert h.client.pieces.routes == {}  # not kept: nothing was applied with it


def test_trust_bundle_goes_to_the_credentials_once():
    bundle = make_ca_bundle()
    h = Harness()
    view = web_view(bundle)
    (ack,) = h.send(xds.SECRET, view[xds.SECRET], "s1", "n1")
    assert not ack.HasField("error_detail")
    h.send(xds.SECRET, view[xds.SECRET], "s2", "n2")
    assert h.bundles == [TrustBundle(bundle)]


@pytest.mark.parametrize("resources", [[cluster_pb2.Cluster(name="x")]])
def test_a_secret_of_the_wrong_type_is_nacked(resources):
    h = Harness()
    (nack,) = h.send(xds.SECRET, resources, "s1", "n1")
    assert "expected envoy.extensions.transport_sockets.tls.v3.Secret" in nack.error_detail.message


def test_eds_and_rds_updates_carry_only_what_changed():
    h = Harness()
    view = _complete(h)
    before = h.applied[-1].endpoints
    catalog = next(
        c for c in view[xds.ENDPOINT] if c.cluster_name.startswith("outbound|8080||catalog")
    )
    changed = type(catalog)()
    changed.CopyFrom(catalog)
    del changed.endpoints[0].lb_endpoints[0]
    h.send(xds.ENDPOINT, [changed], "e9", "n9")  # only the cluster that changed
    after = h.applied[-1].endpoints
    assert len(after[catalog.cluster_name]) == len(before[catalog.cluster_name]) - 1
    for name, members in before.items():
        if name != catalog.cluster_name:
            assert after[name] == members, name  # the others are kept
    dumped = h.client.status(resources=True)["types"]["EDS"]["resources"]
    subscribed = h.client.state.subs[xds.ENDPOINT].names
    assert sorted(r["clusterName"] for r in dumped) == sorted(subscribed)
    # an RDS update naming nothing new keeps the routes
    routes = h.applied[-1].routes
    h.send(xds.ROUTE, [], "r9", "n10")
    assert h.applied[-1].routes == routes


def test_accepted_resources_export_and_restore_into_a_fresh_client():
    """What the state directory keeps (agent/state_keeper.py): the accepted resources
    and versions, replayed in a new client before any control plane answers."""
    h = Harness()
    assert h.client.export() is None  # nothing complete yet
    accepted: list[int] = []
    h.client.on_accepted = lambda: accepted.append(1)
    _complete(h)
    assert len(accepted) == 4
    saved = h.client.export()
    assert saved is not None
    assert {t: e["version"] for t, e in saved.items() if t != xds.SECRET} == {
        xds.CLUSTER: "v0",
        xds.ENDPOINT: "v1",
        xds.LISTENER: "v2",
        xds.ROUTE: "v3",
    }
    fresh = Harness()
    assert fresh.client.restore(json.loads(json.dumps(saved)))  # survives JSON
    (config,) = fresh.applied
    assert config.versions == h.applied[-1].versions
    assert config.clusters.keys() == h.applied[-1].clusters.keys()
    # the versions a reconnect sends are the stored ones
    requests = {r.type_url: r for r in fresh.client.state.initial_requests()}
    assert requests[xds.CLUSTER].version_info == "v0"
    assert list(requests[xds.ENDPOINT].resource_names) == list(
        h.client.state.subs[xds.ENDPOINT].names
    )


def test_a_corrupt_stored_configuration_is_ignored():
    h = Harness()
    assert not h.client.restore({xds.CLUSTER: {"version": "v", "resources": ["%%%"]}})
    assert not h.client.restore({xds.CLUSTER: {"version": "v", "resources": ["AAAA"]}})
    assert h.applied == []
