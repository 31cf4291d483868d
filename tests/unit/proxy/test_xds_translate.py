"""xDS -> ProxyConfig, fed with the control plane's real Translator output, so both sides
stay in agreement; and what the sidecar refuses (NACKs) with a clear message."""

from __future__ import annotations

import dataclasses

import pytest

from gossamer.contract import xds
from gossamer.discovery.model import Service, ServicePort
from gossamer.errors import ConfigError
from gossamer.proxy.config import BreakerLimits, Health, LbPolicy, ListenerMode, NodeInfo, Protocol
from gossamer.proxy.sidecar import Sidecar, SidecarOptions
from gossamer.proxy.xds import clusters as xds_clusters
from gossamer.proxy.xds import listeners as xds_listeners
from gossamer.proxy.xds import translate as xds_translate
from gossamer.proxy.xds.translate import AppPortArg, assemble, local_app_ports, missing
from tests.helpers.xds_fixtures import (
    POLICIES,
    SERVICES,
    TD,
    config_for,
    key,
    make_ca_bundle,
    pieces_of,
    spiffe,
    view,
)

CATALOG = "outbound|8080||catalog.default"


def test_web_sidecar_clusters_follow_mesh_policy():
    config = config_for("web")
    # web may call everything but vault (allows only catalog) and audit (ns default/*
    # is allowed, so web may call it); echo (grpc) is carried over HTTP/2
    assert set(config.clusters) == {
        CATALOG,
        "outbound|50051||echo.default",
        "outbound|8080||web.default",
        "outbound|9000||inventory.default",
        "outbound|9001||inventory.default",
        "outbound|5432||db.default",
        "outbound|7000||legacy.default",
        "outbound|8080||audit.ops",
    }
    catalog = config.clusters[CATALOG]
    assert catalog.service == "catalog" and catalog.port == 8080
    assert catalog.lb_policy is LbPolicy.LEAST_REQUEST
    assert catalog.tls and catalog.identity == spiffe("catalog")
    assert catalog.sni == f"outbound_.8080_._.catalog.default.svc.{TD}"
    assert catalog.outlier.consecutive_5xx == 5 and catalog.outlier.base_ejection == 30.0
    assert config.clusters["outbound|5432||db.default"].protocol is Protocol.TCP
    assert config.clusters["outbound|5432||db.default"].lb_policy is LbPolicy.RANDOM
    assert config.clusters["outbound|7000||legacy.default"].lb_policy is LbPolicy.EWMA
    inventory = config.clusters["outbound|9000||inventory.default"]
    assert inventory.lb_policy is LbPolicy.RING_HASH and inventory.hash_header == "x-user"
    assert config.listeners.mode is ListenerMode.TRANSPARENT and config.listeners.passthrough


def test_endpoints_keep_zone_weight_health_and_tls_mode():
    config = config_for("web")
    catalog = config.endpoints[CATALOG]
    assert [(e.address, e.port, e.zone) for e in catalog] == [
        ("10.0.0.1", 15006, "zone-a"),
        ("10.0.0.3", 15006, "zone-a"),
        ("10.0.0.2", 15006, "zone-b"),
    ]
    assert all(e.tls and e.health is Health.HEALTHY for e in catalog)
    (legacy,) = config.endpoints["outbound|7000||legacy.default"]
    assert not legacy.tls and legacy.weight == 3  # a static endpoint without a sidecar
    (inventory,) = config.endpoints["outbound|9000||inventory.default"]
    assert inventory.health is Health.DRAINING


def test_routes_carry_domains_timeouts_retries_and_budget():
    config = config_for("web")
    hosts = {vh.name: vh for vh in config.routes.virtual_hosts}
    catalog = hosts["catalog.default:8080"]
    assert {"catalog", "catalog:8080", "catalog.default.svc.gossamer.local"} <= set(catalog.domains)
    (route,) = catalog.routes
    assert route.clusters[0].name == CATALOG and route.timeout == 3.0
    assert route.retry is not None
    assert route.retry.attempts == 3  # num_retries 2 + the first try
    assert route.retry.per_try_timeout == 1.0
    assert route.retry.retry_on == {"connect-failure", "reset"}
    assert route.retry.retry_status_codes == {503}
    assert route.retry.budget_percent == 25.0
    (legacy,) = hosts["legacy.default:7000"].routes
    assert legacy.timeout is None and legacy.retry is None  # timeout 0s: none
    (web,) = hosts["web.default:8080"].routes
    assert web.timeout == 15.0  # Envoy's default when the route sets none
    assert len({r.name for vh in config.routes.virtual_hosts for r in vh.routes}) == sum(
        len(vh.routes) for vh in config.routes.virtual_hosts
    )  # route names are unique (retry budgets are kept per route)
    assert not any("*" in vh.domains for vh in config.routes.virtual_hosts)  # passthrough
    assert not config.routes.validate_clusters


def test_inbound_authorization_and_app_port_mapping():
    catalog = config_for("catalog", app_ports=[AppPortArg(18080)])
    (app,) = catalog.inbound.app_ports
    assert (app.port, app.local_port, app.protocol) == (8080, 18080, Protocol.HTTP)
    authz = catalog.inbound.authorization
    assert authz.allows(spiffe("web")) and not authz.allows(spiffe("inventory"))
    web = config_for("web").inbound.authorization
    assert web.allow_all_mesh  # no authorization policy: every mesh identity
    audit = config_for("audit", "ops").inbound.authorization
    assert audit.allows(spiffe("web")) and audit.allows(spiffe("db"))
    assert not audit.allows(spiffe("web", "ops"))  # only namespace default
    inventory = config_for("inventory").inbound
    assert [(p.port, p.protocol) for p in inventory.app_ports] == [
        (9000, Protocol.HTTP),
        (9001, Protocol.TCP),
    ]


def test_local_app_ports():
    assert local_app_ports([8080], [AppPortArg(18080)]) == {8080: 18080}
    assert local_app_ports([8080, 9090], [AppPortArg(8080), AppPortArg(9090)]) == {
        8080: 8080,
        9090: 9090,
    }
    assert local_app_ports([8080, 9090], [AppPortArg(18080, service_port=9090)]) == {
        8080: 8080,
        9090: 18080,
    }
    assert local_app_ports([8080], []) == {8080: 8080}


def test_the_data_path_accepts_the_assembled_configuration():
    config = config_for("web")
    sidecar = Sidecar(SidecarOptions(node=NodeInfo("web", trust_domain=TD)))
    sidecar.apply(config)  # the cluster manager, balancers and router build from it
    assert sidecar.snapshot is not None
    assert sidecar.snapshot.router.match("catalog:8080", b"/x") is not None
    assert sidecar.snapshot.clusters[CATALOG].balancer is not None
    assert ("10.0.0.1", 8080) in sidecar.snapshot.destinations  # transparent mode index


def test_missing_pieces_before_the_first_configuration():
    resources = view("web")
    full = pieces_of(resources)
    assert missing(full) == []
    assert missing(xds_translate.Pieces()) == ["CDS", "LDS"]
    no_eds = dataclasses.replace(full, endpoints={}, endpoints_seen=False)
    assert missing(no_eds) == ["EDS"]
    no_rds = dataclasses.replace(full, routes={})
    assert missing(no_rds) == ["RDS outbound"]
    # a view without services with EDS clusters needs no EDS
    lonely = view("web", services={key("web"): SERVICES[key("web")]}, policies=[{"name": "web"}])
    assert xds_clusters.decode_clusters(lonely[xds.CLUSTER]).eds_names == (
        "outbound|8080||web.default",
    )


def test_a_route_to_a_cluster_cds_no_longer_has_still_assembles():
    resources = view("web")
    pieces = pieces_of(resources)
    clusters = pieces.clusters
    assert clusters is not None
    outbound = {k: v for k, v in clusters.outbound.items() if k != CATALOG}
    pieces = dataclasses.replace(pieces, clusters=dataclasses.replace(clusters, outbound=outbound))
    config = assemble(NodeInfo("web", trust_domain=TD), pieces)
    assert CATALOG not in config.clusters  # the route answers 503 no-cluster meanwhile
    assert any(
        r.clusters[0].name == CATALOG for vh in config.routes.virtual_hosts for r in vh.routes
    )


def test_root_ca_secret():
    resources = view("web")
    with pytest.raises(ConfigError, match="not a PEM certificate bundle"):
        xds_translate.decode_secret(resources[xds.SECRET])
    ca_bundle = make_ca_bundle()
    good = view("web", bundle=ca_bundle)
    assert xds_translate.decode_secret(good[xds.SECRET]) == ca_bundle
    assert xds_translate.decode_secret([]) is None


def test_http2_ports_become_http2_app_ports_and_grpc_clusters():
    policies = [*POLICIES]
    services = dict(SERVICES)
    services[key("web")] = Service("web", ports=(ServicePort(8080, "grpc"),))
    resources = view("web", policies=policies, services=services)
    decoded = xds_clusters.decode_clusters(resources[xds.CLUSTER])
    assert decoded.inbound_h2 == {8080}
    config = assemble(NodeInfo("web", trust_domain=TD), pieces_of(resources))
    assert [ap.protocol for ap in config.inbound.app_ports] == [Protocol.HTTP2]
    # catalog's sidecar may call web: over HTTP/2, with the grpc protocol
    resources = view("catalog", policies=policies, services=services)
    decoded = xds_clusters.decode_clusters(resources[xds.CLUSTER])
    assert not decoded.ignored
    assert decoded.outbound["outbound|8080||web.default"].cluster.protocol is Protocol.GRPC


def test_agrees_with_sni_naming_of_the_data_path():
    from gossamer.proxy.transport.tls_contexts import sni_for

    config = config_for("web")
    for cluster in config.clusters.values():
        assert cluster.sni == sni_for(cluster.service, cluster.namespace, cluster.port, TD)


def test_ring_hash_without_header_balances_at_random():
    policies = [p for p in POLICIES if p["name"] != "inventory"]
    policies.append({"name": "inventory", "lb_policy": "ring_hash"})
    config = config_for("web", policies=policies)
    assert config.clusters["outbound|9000||inventory.default"].lb_policy is LbPolicy.RANDOM


def test_listeners_rds_names():
    resources = view("web")
    listeners = xds_listeners.decode_listeners(resources[xds.LISTENER], TD)
    assert listeners.rds_names == (xds.OUTBOUND_ROUTE,)


def _with_catalog(**extra: object) -> list[dict[str, object]]:
    return [p for p in POLICIES if p["name"] != "catalog"] + [
        {**next(p for p in POLICIES if p["name"] == "catalog"), **extra}
    ]


def test_resilience_policy_from_mesh_yaml():
    default = config_for("web").clusters[CATALOG]
    assert default.outlier.consecutive_5xx == 5 and default.panic_threshold == 50.0
    assert default.outlier.enforcing_consecutive_gateway == 0 and not default.outlier.success_rate
    tuned = _with_catalog(
        outlier_detection={
            "consecutive_5xx": 0,
            "consecutive_gateway_errors": 3,
            "base_ejection_time": "10s",
            "max_ejection_percent": 30,
            "panic_threshold": 25,
        }
    )
    cluster = config_for("web", policies=tuned).clusters[CATALOG]
    assert cluster.outlier.consecutive_failures == 3  # the gateway rule is the enforced one
    assert cluster.outlier.enforcing_consecutive_gateway == 100
    assert cluster.outlier.enforcing_consecutive_5xx == 0
    assert cluster.outlier.base_ejection == 10.0
    assert cluster.outlier.max_ejection_percent == 30
    assert cluster.panic_threshold == 25.0


def test_success_rate_breakers_and_health_check_from_mesh_yaml():
    tuned = _with_catalog(
        outlier_detection={
            "interval": "2s",
            "success_rate": {"minimum_hosts": 3, "request_volume": 20, "stdev_factor": 1.0},
        },
        circuit_breakers={"max_connections": 10, "max_pending_requests": 2},
        health_check={"http_path": "/healthz", "interval": "3s", "unhealthy_threshold": 2},
    )
    cluster = config_for("web", policies=tuned).clusters[CATALOG]
    od = cluster.outlier
    assert od.success_rate and od.interval == 2.0
    assert (od.success_rate_minimum_hosts, od.success_rate_request_volume) == (3, 20)
    assert od.success_rate_stdev_factor == 1000
    assert od.consecutive_5xx == 5 and od.enforcing_consecutive_gateway == 0
    # the limits left out take Envoy's defaults; catalog's retry budget governs retries
    assert cluster.breaker == BreakerLimits(10, 2, 1024, None)
    hc = cluster.health_check
    assert hc is not None and hc.http_path == "/healthz" and hc.interval == 3.0
    assert hc.unhealthy_threshold == 2 and hc.expected(200) and not hc.expected(503)
    tcp = _with_catalog(health_check={"tcp": True})
    hc = config_for("web", policies=tcp).clusters[CATALOG].health_check
    assert hc is not None and hc.http_path is None


def test_an_http_check_on_a_grpc_port_speaks_http2():
    policies = [p for p in POLICIES if p["name"] != "echo"]
    policies.append({"name": "echo", "health_check": {"http_path": "/ping"}})
    config = config_for("web", policies=policies)
    echo = config.clusters["outbound|50051||echo.default"].health_check
    assert echo is not None and echo.http2 and echo.http_path == "/ping"
    tuned = _with_catalog(health_check={"http_path": "/healthz"})
    catalog = config_for("web", policies=tuned).clusters[CATALOG].health_check
    assert catalog is not None and not catalog.http2


def test_a_retry_budget_alone_leaves_active_retries_unlimited():
    budget = config_for("web").clusters[CATALOG].breaker  # catalog: budget_percent 25
    assert budget == BreakerLimits(1024, 1024, 1024, None)
    plain = _with_catalog(retries={"attempts": 2}, circuit_breakers={"max_requests": 5})
    assert config_for("web", policies=plain).clusters[CATALOG].breaker == BreakerLimits(
        1024, 1024, 5, 3
    )
    none = [{k: v for k, v in p.items() if k != "retries"} for p in POLICIES]
    assert config_for("web", policies=none).clusters[CATALOG].breaker == BreakerLimits()


def _catalog_proto(resources):
    from envoy.config.cluster.v3 import cluster_pb2

    for packed in resources[xds.CLUSTER]:
        cluster = cluster_pb2.Cluster()
        packed.Unpack(cluster)
        if cluster.name == CATALOG:
            return cluster
    raise AssertionError("no catalog cluster")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.health_checks.add().grpc_health_check.SetInParent(), "grpc_health_check"),
        (
            lambda c: c.circuit_breakers.thresholds.add().max_connection_pools.__setattr__(
                "value", 3
            ),
            "max_connection_pools",
        ),
        (
            lambda c: c.outlier_detection.__setattr__("split_external_local_origin_errors", True),
            "split_external_local_origin_errors",
        ),
    ],
)
def test_resilience_the_sidecar_does_not_implement_is_refused(change, message):
    from google.protobuf import any_pb2

    resources = view("web")
    cluster = _catalog_proto(resources)
    change(cluster)
    packed = any_pb2.Any()
    packed.Pack(cluster)
    with pytest.raises(ConfigError, match=message):
        xds_clusters.decode_clusters([packed])
