"""Which address of an instance on several networks a sidecar connects to, end to end
through the EDS encoding: the control plane's additional_addresses, the sidecar's
decoding and its transparent-mode destination index."""

from __future__ import annotations

from ipaddress import IPv4Interface

from gossamer.contract import mesh_pb2
from gossamer.contract.identity import ServiceKey
from gossamer.control.registration import endpoint_from_instance
from gossamer.control.translate import endpoints as control_endpoints
from gossamer.discovery.model import Endpoint
from gossamer.proxy.config import Cluster
from gossamer.proxy.routing.router import destination_index
from gossamer.proxy.transport.local_networks import connect_address, local_networks
from gossamer.proxy.xds.endpoints import load_assignment

KEY = ServiceKey("default", "backend")
BACKNET = IPv4Interface("172.20.0.5/16")
FRONTNET = IPv4Interface("172.21.0.7/16")


def test_primary_address_when_it_is_on_one_of_our_networks():
    assert connect_address("172.20.0.3", ["172.21.0.3"], [BACKNET, FRONTNET]) == "172.20.0.3"


def test_the_address_on_a_shared_network_when_the_primary_is_not():
    assert connect_address("172.20.0.3", ["172.21.0.3"], [FRONTNET]) == "172.21.0.3"


def test_primary_when_nothing_is_shared_loopback_or_no_alternative():
    assert connect_address("172.20.0.3", ["172.22.0.3"], [FRONTNET]) == "172.20.0.3"
    assert connect_address("127.0.0.1", ["172.21.0.3"], [FRONTNET]) == "127.0.0.1"
    assert connect_address("172.20.0.3", [], [FRONTNET]) == "172.20.0.3"
    assert connect_address("172.20.0.3", ["172.21.0.3"], []) == "172.20.0.3"


def test_this_machine_has_a_non_loopback_network():
    networks = local_networks()
    assert networks and all(not n.ip.is_loopback for n in networks)


def instance(address: str = "", others: tuple[str, ...] = ()) -> mesh_pb2.Instance:
    return mesh_pb2.Instance(
        instance_id="backend-1", address=address, port=15006, other_addresses=list(others)
    )


def test_registration_keeps_other_addresses_without_the_primary_or_duplicates():
    ep = endpoint_from_instance(
        instance(others=("172.20.0.3", "172.21.0.3", "172.21.0.3")), KEY, "172.20.0.3"
    )
    assert ep.address == "172.20.0.3" and ep.other_addresses == ("172.21.0.3",)
    assert Endpoint.from_dict(ep.to_dict()) == ep


def test_registration_on_loopback_has_no_other_addresses():
    ep = endpoint_from_instance(instance(others=("10.1.2.3",)), KEY, "127.0.0.1")
    assert ep.other_addresses == ()


def test_eds_carries_other_addresses_and_the_sidecar_connects_on_its_network():
    ep = endpoint_from_instance(instance(others=("172.21.0.3",)), KEY, "172.20.0.3")
    cla = control_endpoints.load_assignment("outbound|8000||backend.default", [ep], 8000)
    (lb,) = cla.endpoints[0].lb_endpoints
    assert [a.address.socket_address.address for a in lb.endpoint.additional_addresses] == [
        "172.21.0.3"
    ]
    (on_front,) = load_assignment(cla, cla.cluster_name, [FRONTNET])
    assert on_front.endpoint.address == "172.21.0.3"
    assert on_front.endpoint.aliases == ("172.20.0.3",)
    (on_both,) = load_assignment(cla, cla.cluster_name, [BACKNET, FRONTNET])
    assert on_both.endpoint.address == "172.20.0.3"

    # the verified address is kept apart from the claimed one it is reached at
    assert on_front.endpoint.primary == "172.20.0.3" and on_both.endpoint.primary == ""

    # transparent mode: the app may dial either address; the verified one names the
    # cluster, the claimed one is pinned to that address (with the cluster's identity)
    cluster = Cluster(name=cla.cluster_name, service="backend", port=8000, tls=False)
    index = destination_index({cluster.name: cluster}, {cluster.name: [on_front.endpoint]})
    assert index.clusters == {("172.20.0.3", 8000): cluster.name}
    name, pinned = index.pinned[("172.21.0.3", 8000)]
    assert name == cluster.name and pinned.key == on_front.endpoint.key == ("172.21.0.3", 15006)
