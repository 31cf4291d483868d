"""Configuration: validation, the two-phase holder, static files and their dump."""

from __future__ import annotations

import json

import pytest

from gossamer.errors import ConfigError
from gossamer.proxy.config import (
    Authorization,
    Cluster,
    ConfigHolder,
    Endpoint,
    LbPolicy,
    NodeInfo,
    ProxyConfig,
    Route,
    RouteTable,
    VirtualHost,
    WeightedCluster,
)
from gossamer.proxy.static_config import dump_config, load_config, load_config_text
from gossamer.yamlconf import load_document

NODE = NodeInfo("web")
CAT = "spiffe://gossamer.local/ns/default/sa/catalog"

DOC = f"""
node: {{service: web, zone: a}}
listeners: {{mode: transparent, passthrough: false}}
inbound:
  app_ports: [{{port: 8080}}, {{port: 9000, protocol: tcp}}]
  authorization: {{allowed: ["spiffe://gossamer.local/ns/default/sa/gateway"]}}
clusters:
  - name: outbound|8080||catalog
    service: catalog
    port: 8080
    identity: {CAT}
    lb_policy: ring_hash
    hash_header: x-user
    connect_timeout: 250ms
    endpoints:
      - {{address: 10.0.0.1, port: 15006, zone: a, weight: 2}}
      - {{address: 10.0.0.2, port: 15006, zone: b, health: unhealthy}}
routes:
  virtual_hosts:
    - name: catalog
      domains: [catalog, "catalog:8080"]
      routes:
        - name: catalog-api
          prefix: /api
          clusters: [{{name: outbound|8080||catalog, weight: 3}}]
          timeout: 2s
          retry: {{attempts: 2, per_try_timeout: 500ms, retry_on: [connect-failure, gateway-error]}}
versions: {{clusters: "7", endpoints: "9"}}
"""


def test_static_config_loads_every_section():
    cfg = load_config_text(DOC)
    assert cfg.node.zone == "a"
    assert cfg.listeners.mode.value == "transparent" and not cfg.listeners.passthrough
    assert [ap.port for ap in cfg.inbound.app_ports] == [8080, 9000]
    assert cfg.inbound.authorization.allows("spiffe://gossamer.local/ns/default/sa/gateway")
    assert not cfg.inbound.authorization.allows(CAT)
    cluster = cfg.clusters["outbound|8080||catalog"]
    assert cluster.lb_policy is LbPolicy.RING_HASH and cluster.connect_timeout == 0.25
    eps = cfg.endpoints["outbound|8080||catalog"]
    assert eps[0].weight == 2 and eps[1].health.value == "unhealthy"
    route = cfg.routes.virtual_hosts[0].routes[0]
    assert route.timeout == 2.0 and route.retry is not None
    assert route.retry.retry_status_codes == {502, 503, 504}
    assert route.retry.retry_on == {"connect-failure"}
    assert cfg.versions == {"clusters": "7", "endpoints": "9"}


def test_dump_loads_back_to_the_same_config():
    cfg = load_config_text(DOC)
    again = load_config(load_document(json.dumps(dump_config(cfg))))
    assert again == cfg


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (
            "node: {service: web}\nclusters: [{name: c, service: s, port: 70000, tls: false}]",
            "port",
        ),
        ("node: {service: web}\nclusters: [{name: c, service: s, port: 80}]", "SPIFFE ID"),
        ("node: {service: web}\nlisteners: {mode: sideways}", "must be one of"),
        ("node: {service: web}\nbogus: 1", "unknown field"),
        (
            "node: {service: web}\nroutes: {virtual_hosts: [{name: v, domains: [x], routes: [{name: r, clusters: [{name: nope}]}]}]}",
            "unknown cluster",
        ),
        (
            "node: {service: web}\nclusters: [{name: c, service: s, port: 80, tls: false, lb_policy: ring_hash}]",
            "hash_header",
        ),
    ],
)
def test_bad_static_config_names_the_problem(doc, message):
    with pytest.raises(ConfigError, match=message):
        load_config_text(doc, source="proxy.yaml")


def test_error_carries_the_line():
    with pytest.raises(ConfigError) as info:
        load_config_text(
            "node: {service: web}\nclusters:\n  - name: c\n    service: s\n    port: 0\n", "f.yaml"
        )
    assert "f.yaml:5" in str(info.value)


def _config(endpoints: tuple[Endpoint, ...]) -> ProxyConfig:
    cluster = Cluster("c", "catalog", 80, identity=CAT)
    route = Route("r", (WeightedCluster("c"),))
    return ProxyConfig(
        node=NODE,
        routes=RouteTable(virtual_hosts=(VirtualHost("v", ("catalog",), (route,)),)),
        clusters={"c": cluster},
        endpoints={"c": endpoints},
    )


def test_holder_swaps_atomically_and_rejects_without_changing_anything():
    first = _config((Endpoint("10.0.0.1", 1),))
    holder = ConfigHolder()
    seen: list[ProxyConfig] = []

    def prepare(cfg: ProxyConfig):
        if not cfg.endpoints["c"]:
            raise ConfigError("no endpoints")
        return lambda: seen.append(cfg)

    holder.subscribe(prepare)
    holder.apply(first)
    assert holder.current is first and holder.generation == 1 and seen == [first]
    with pytest.raises(ConfigError):
        holder.apply(_config(()))
    assert holder.current is first and holder.generation == 1 and seen == [first]


def test_authorization():
    assert Authorization().allows("spiffe://x/ns/a/sa/b")
    assert not Authorization().allows(None)
    only = Authorization(allow_all_mesh=False, allowed=frozenset({CAT}))
    assert only.allows(CAT) and not only.allows("spiffe://gossamer.local/ns/default/sa/web")


def test_config_is_immutable():
    cfg = _config((Endpoint("10.0.0.1", 1),))
    with pytest.raises(TypeError):
        cfg.clusters["x"] = cfg.clusters["c"]  # type: ignore[index]
    with pytest.raises(AttributeError):
        cfg.node = NODE  # type: ignore[misc]
