from __future__ import annotations

from envoy.config.core.v3 import health_check_pb2

from gossamer.contract import xds
from gossamer.contract.identity import ServiceKey
from gossamer.contract.vocabulary import Health
from gossamer.control.translate import endpoints
from gossamer.discovery.model import Endpoint

KEY = ServiceKey("default", "echo")


def ep(instance, zone="", weight=1, health=Health.HEALTHY, mtls=False, ports=()):
    return Endpoint(
        KEY,
        instance,
        "10.0.0.1",
        7000,
        service_ports=ports,
        zone=zone,
        weight=weight,
        health=health,
        mtls=mtls,
    )


def test_grouped_by_zone_with_weights_on_every_locality():
    cla = endpoints.load_assignment(
        "c",
        [
            ep("b", "z2", weight=2),
            ep("a", "z1", weight=3),
            ep("c", "z1", weight=5, health=Health.UNHEALTHY),
            ep("d", "z3", health=Health.DRAINING),
            ep("e", "", weight=4),
        ],
        8080,
    )
    assert cla.cluster_name == "c"
    zones = [(loc.locality.zone, loc.load_balancing_weight.value) for loc in cla.endpoints]
    # healthy weight per zone, never 0 (gRPC ignores localities without a weight)
    assert zones == [("", 4), ("z1", 3), ("z2", 2), ("z3", 1)]
    z1 = cla.endpoints[1].lb_endpoints
    assert [e.load_balancing_weight.value for e in z1] == [3, 5]
    assert [e.health_status for e in z1] == [health_check_pb2.HEALTHY, health_check_pb2.UNHEALTHY]
    assert cla.endpoints[3].lb_endpoints[0].health_status == health_check_pb2.DRAINING


def test_only_endpoints_serving_the_port_and_tls_mode_metadata():
    cla = endpoints.load_assignment("c", [ep("a", ports=(9090,)), ep("b", mtls=True)], 8080)
    [locality] = cla.endpoints
    [only] = locality.lb_endpoints
    assert only.metadata.filter_metadata[xds.TRANSPORT_SOCKET_MATCH][xds.TLS_MODE_KEY] == "istio"
    plain = endpoints.lb_endpoint(ep("a"))
    assert not plain.HasField("metadata")


def test_no_endpoints_gives_an_empty_assignment():
    assert list(endpoints.load_assignment("c", [], 80).endpoints) == []


def test_priorities_follow_the_requesting_zone_without_gaps():
    members = [
        Endpoint(KEY, "a", "10.0.0.1", 15006, zone="zone-a"),
        Endpoint(KEY, "b", "10.0.0.2", 15006, zone="zone-b"),
        Endpoint(KEY, "c", "10.0.0.3", 15006, zone="zone-c"),
    ]

    def priorities(local: str) -> dict[str, int]:
        cla = endpoints.load_assignment("c", members, 8080, local)
        return {loc.locality.zone: loc.priority for loc in cla.endpoints}

    assert priorities("zone-b") == {"zone-a": 1, "zone-b": 0, "zone-c": 1}
    assert priorities("") == {"zone-a": 0, "zone-b": 0, "zone-c": 0}
    assert priorities("zone-x") == {"zone-a": 0, "zone-b": 0, "zone-c": 0}  # no gap at 0
    assert endpoints.priority_levels(["zone-a"], "zone-b") == {"zone-a": 0}
