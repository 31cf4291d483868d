"""The sidecar's ADS state machine: ACK, NACK with last good kept, dependent names, reconnect."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2

from gossamer.contract import xds
from gossamer.proxy.xds import ads_state as ads


def any_of(message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def decode_clusters(resources):
    names = []
    for res in resources:
        cluster = cluster_pb2.Cluster()
        if not res.Unpack(cluster):
            raise ValueError("not a Cluster")
        if cluster.name.startswith("bad"):
            raise ValueError(f"cluster {cluster.name} is invalid")
        names.append(cluster.name)
    return ads.Decoded(tuple(names), references=tuple(names))


def make_state():
    decoders = {t: (lambda rs: ads.Decoded(len(rs))) for t in ads.ORDER}
    decoders[xds.CLUSTER] = decode_clusters
    return ads.AdsState(base_pb2.Node(id="web~1"), decoders)


def cds(version, nonce, *names):
    return discovery_pb2.DiscoveryResponse(
        version_info=version,
        nonce=nonce,
        type_url=xds.CLUSTER,
        resources=[any_of(cluster_pb2.Cluster(name=n)) for n in names],
    )


def test_initial_requests_order_and_wildcards():
    reqs = make_state().initial_requests()
    assert [r.type_url for r in reqs] == [xds.CLUSTER, xds.LISTENER, xds.SECRET]
    assert list(reqs[0].resource_names) == [] and list(reqs[2].resource_names) == ["ROOTCA"]
    assert all(r.node.id == "web~1" and r.response_nonce == "" for r in reqs)


def test_ack_then_dependent_eds_subscription():
    state = make_state()
    out = state.handle(cds("v1", "n1", "b", "a"))
    ack, eds = out
    assert (ack.type_url, ack.version_info, ack.response_nonce) == (xds.CLUSTER, "v1", "n1")
    assert not ack.HasField("error_detail")
    assert eds.type_url == xds.ENDPOINT and list(eds.resource_names) == ["a", "b"]
    assert state.subs[xds.CLUSTER].applied == ("b", "a")
    # same names again: ACK only, no new EDS request
    assert len(state.handle(cds("v2", "n2", "a", "b"))) == 1


def test_nack_keeps_last_good_version():
    state = make_state()
    state.handle(cds("v1", "n1", "a"))
    (nack,) = state.handle(cds("v2", "n2", "a", "bad-one"))
    assert nack.version_info == "v1" and nack.response_nonce == "n2"
    assert "bad-one is invalid" in nack.error_detail.message
    sub = state.subs[xds.CLUSTER]
    assert sub.applied == ("a",) and sub.accepted_version == "v1" and sub.nacks == 1
    # a later good update is accepted again
    ack, _eds = state.handle(cds("v3", "n3", "a", "c"))
    assert ack.version_info == "v3" and not ack.HasField("error_detail")
    assert state.subs[xds.CLUSTER].last_error is None


def test_wrong_message_type_is_a_nack():
    state = make_state()
    bad = discovery_pb2.DiscoveryResponse(
        version_info="v1",
        nonce="n1",
        type_url=xds.CLUSTER,
        resources=[any_of(base_pb2.Node(id="x"))],
    )
    (nack,) = state.handle(bad)
    assert nack.error_detail.message.startswith("ValueError")


def test_unknown_type_ignored():
    state = make_state()
    assert (
        state.handle(discovery_pb2.DiscoveryResponse(type_url="type.googleapis.com/x.Y", nonce="1"))
        == []
    )


def test_reconnect_resends_versions_without_nonces():
    state = make_state()
    state.handle(cds("v1", "n1", "a"))
    reqs = {r.type_url: r for r in state.initial_requests()}
    assert reqs[xds.CLUSTER].version_info == "v1" and reqs[xds.CLUSTER].response_nonce == ""
    assert list(reqs[xds.ENDPOINT].resource_names) == ["a"]
    assert state.versions()["envoy.config.cluster.v3.Cluster"] == "v1"
