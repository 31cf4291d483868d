from __future__ import annotations

from gossamer.contract import xds
from gossamer.contract.identity import ServiceKey
from gossamer.control.config import mesh_from_mapping
from gossamer.control.translate import routes
from gossamer.discovery.model import Service, ServicePort


def policies(**service):
    return mesh_from_mapping({"services": [{"name": "catalog", **service}]}).policies


KEY = ServiceKey("default", "catalog")


def test_route_action_carries_the_policy():
    policy = policies(
        timeout="3s",
        retries={
            "attempts": 2,
            "per_try_timeout": "500ms",
            "on": ["connect-failure", "unavailable", 503, 504],
        },
    )[KEY]
    action = routes.route_action("c", policy)
    assert action.cluster == "c"
    assert (
        action.timeout.seconds == 3 and action.max_stream_duration.max_stream_duration.seconds == 3
    )
    retry = action.retry_policy
    assert retry.retry_on == "connect-failure,unavailable,retriable-status-codes"
    assert list(retry.retriable_status_codes) == [503, 504]
    assert retry.num_retries.value == 2 and retry.per_try_timeout.nanos == 500_000_000


def test_zero_attempts_and_zero_timeout():
    policy = policies(timeout=0, retries={"attempts": 0})[KEY]
    action = routes.route_action("c", policy)
    assert not action.HasField("retry_policy")  # gRPC NACKs num_retries 0
    assert action.HasField("timeout") and action.timeout.seconds == 0  # disabled
    assert not action.HasField("max_stream_duration")


def test_ring_hash_hashes_the_header():
    action = routes.route_action("c", policies(lb_policy="ring_hash", hash_header="x-user")[KEY])
    [hash_policy] = action.hash_policy
    assert hash_policy.header.header_name == "x-user"


def test_outbound_routes_one_virtual_host_per_port_and_unique_domains():
    services = [
        Service(
            "catalog",
            "default",
            (ServicePort(8080), ServicePort(9090, "grpc"), ServicePort(5432, "tcp")),
        ),
        Service("catalog", "shop", (ServicePort(8080),)),
    ]
    config = routes.outbound_route_config(services, {}, "td", "shop")
    assert config.name == xds.OUTBOUND_ROUTE
    hosts = {h.name: list(h.domains) for h in config.virtual_hosts}
    assert set(hosts) == {
        "catalog.default:8080",
        "catalog.default:9090",
        "catalog.shop:8080",
        "allow_any",
    }
    # from namespace shop the bare name means shop's catalog
    assert (
        "catalog" in hosts["catalog.shop:8080"] and "catalog" not in hosts["catalog.default:8080"]
    )
    assert "catalog.default" in hosts["catalog.default:8080"]
    assert "catalog.default" not in hosts["catalog.default:9090"]  # not the primary port
    every = [d for domains in hosts.values() for d in domains]
    assert len(every) == len(set(every))
    assert config.virtual_hosts[-1].routes[0].route.cluster == xds.PASSTHROUGH_CLUSTER
    first = next(h for h in config.virtual_hosts if h.name == "catalog.default:9090")
    assert first.routes[0].route.cluster == "outbound|9090||catalog.default"


def test_inbound_route_config():
    config = routes.inbound_route_config(ServicePort(8080))
    assert config.virtual_hosts[0].domains == ["*"]
    assert config.virtual_hosts[0].routes[0].route.cluster == "inbound|8080"
