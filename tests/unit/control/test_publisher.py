from __future__ import annotations

import asyncio

from gossamer.contract import xds
from gossamer.contract.identity import ServiceKey
from gossamer.control.cache import SnapshotCache
from gossamer.control.config import mesh_from_mapping
from gossamer.control.publisher import Publisher
from gossamer.control.translate import PROXYLESS, NodeGroup
from gossamer.discovery.model import Endpoint, RegistryState, Service, ServicePort

KEY = ServiceKey("default", "echo")


def state(ports: int = 1, revision: int = 1) -> RegistryState:
    service = Service("echo", ports=tuple(ServicePort(8080 + i) for i in range(ports)))
    ep = Endpoint(KEY, "a", "127.0.0.1", 7000)
    return RegistryState(revision, {KEY: service}, {(KEY, "a"): ep})


def test_publishes_every_group_once_inputs_exist():
    cache = SnapshotCache()
    publisher = Publisher(cache)
    publisher.set_state(state())
    assert cache.groups() == []  # no mesh config yet
    publisher.set_mesh(mesh_from_mapping({}))
    assert cache.groups() == ["proxyless", "sidecar:default/echo"]
    assert publisher.stats.publishes == 1 and publisher.stats.groups == 2
    proxyless = cache.get("proxyless")
    assert proxyless is not None
    assert set(proxyless.get(xds.LISTENER).resources) == {
        "echo:8080",
        "echo.default:8080",
        "echo",
        "echo.default",
    }


def test_revision_alone_does_not_change_versions_and_groups_of_streams_are_kept():
    cache = SnapshotCache()
    publisher = Publisher(cache)
    publisher.set_mesh(mesh_from_mapping({}))
    publisher.set_state(state())
    seen: list[object] = []
    cache.watch("proxyless", seen.append)
    publisher.set_state(state(revision=99))  # same content, new registry revision
    assert len(seen) == 1
    # a sidecar of a service the registry does not know yet still gets a snapshot
    stranger = NodeGroup(ServiceKey("default", "newcomer"))
    publisher.ensure_group(stranger)
    cache.watch(stranger.name, lambda s: None)
    assert cache.get(stranger.name) is not None
    publisher.set_state(state(ports=2))
    assert len(seen) == 2
    snap = cache.get(stranger.name)
    assert snap is not None and "outbound|8081||echo.default" in snap.get(xds.CLUSTER).resources


def test_trust_bundle_adds_the_mtls_side():
    cache = SnapshotCache()
    publisher = Publisher(cache)
    publisher.set_mesh(mesh_from_mapping({}))
    publisher.set_state(state())
    sidecar = cache.get("sidecar:default/echo")
    assert sidecar is not None and xds.INBOUND_LISTENER not in sidecar.get(xds.LISTENER).resources
    publisher.set_trust_bundle(b"-----BEGIN CERTIFICATE-----\n")
    sidecar = cache.get("sidecar:default/echo")
    assert sidecar is not None
    assert xds.INBOUND_LISTENER in sidecar.get(xds.LISTENER).resources
    assert xds.ROOT_CA_SECRET in sidecar.get(xds.SECRET).resources
    assert PROXYLESS.name in cache.groups()


def test_groups_nobody_watches_any_more_are_dropped():
    cache = SnapshotCache()
    publisher = Publisher(cache)
    publisher.set_mesh(mesh_from_mapping({}))
    publisher.set_state(state())
    stranger = NodeGroup(ServiceKey("default", "ghost"))
    publisher.ensure_group(stranger)
    cancel = cache.watch(stranger.name, lambda s: None)
    publisher.set_state(state(ports=2))
    assert stranger.name in cache.groups()
    cancel()
    publisher.set_state(state(ports=3))
    assert stranger.name not in cache.groups()
    assert "sidecar:default/echo" in cache.groups()  # registry services always have one


async def test_hold_publishes_nothing_until_it_ends():
    now = [0.0]
    cache = SnapshotCache()
    publisher = Publisher(cache, clock=lambda: now[0])
    publisher.hold(0.05)  # the release itself runs on the loop's own clock
    publisher.set_mesh(mesh_from_mapping({}))
    publisher.set_state(state())
    publisher.publish()
    publisher.ensure_group(NodeGroup(ServiceKey("default", "newcomer")))
    assert cache.groups() == [] and publisher.held
    now[0] = 1.0
    await asyncio.sleep(0.1)
    assert not publisher.held
    assert "sidecar:default/echo" in cache.groups()
