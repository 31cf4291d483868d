"""Routing by authority and path, weighted clusters, original destinations."""

from __future__ import annotations

import random
from collections import Counter

from gossamer.proxy.config import Cluster, Endpoint, Route, RouteTable, VirtualHost, WeightedCluster
from gossamer.proxy.routing.router import Router, destination_index, pick_cluster


def route(name: str, prefix: str = "/", *clusters: tuple[str, int]) -> Route:
    return Route(name, tuple(WeightedCluster(c, w) for c, w in clusters or ((name, 1),)), prefix)


TABLE = RouteTable(
    virtual_hosts=(
        VirtualHost("catalog", ("catalog", "catalog:8080"), (route("api", "/api"), route("rest"))),
        VirtualHost("wild", ("*.example.com",), (route("wild"),)),
        VirtualHost("deep", ("*.deep.example.com",), (route("deep"),)),
        VirtualHost("default", ("*",), (route("default"),)),
    )
)


def test_exact_then_longest_wildcard_then_default():
    r = Router(TABLE)
    assert r.match("catalog", b"/api/items")[1].name == "api"  # type: ignore[index]
    assert r.match("catalog:8080", b"/other")[1].name == "rest"  # type: ignore[index]
    assert r.match("x.example.com", b"/")[1].name == "wild"  # type: ignore[index]
    assert r.match("a.deep.example.com", b"/")[1].name == "deep"  # type: ignore[index]
    assert r.match("unknown", b"/")[1].name == "default"  # type: ignore[index]


def test_no_match_without_default():
    r = Router(RouteTable(virtual_hosts=TABLE.virtual_hosts[:1]))
    assert r.match("inventory", b"/") is None
    assert r.match("catalog:9090", b"/") is None


def test_weighted_clusters():
    rt = route("split", "/", ("v1", 1), ("v2", 3))
    rng = random.Random(3)
    counts = Counter(pick_cluster(rt, rng) for _ in range(8000))
    assert 0.72 < counts["v2"] / 8000 < 0.78


def test_destination_index_maps_endpoint_address_and_service_port():
    clusters = {
        "c": Cluster("c", "catalog", 8080, tls=False),
        "d": Cluster("d", "db", 5432, tls=False),
    }
    endpoints = {
        "c": (Endpoint("10.0.0.1", 15006), Endpoint("10.0.0.2", 15006)),
        "d": (Endpoint("10.0.0.3", 15006),),
    }
    index = destination_index(clusters, endpoints)
    assert index.clusters == {
        ("10.0.0.1", 8080): "c",
        ("10.0.0.2", 8080): "c",
        ("10.0.0.3", 5432): "d",
    }
    assert index.pinned == {}
