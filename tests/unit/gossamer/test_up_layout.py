"""The demo mesh's layout: who runs where, on which ports, in both shapes."""

from __future__ import annotations

import socket

import pytest

from gossamer.errors import UsageError
from gossamer.up.layout import (
    BasePorts,
    FreePorts,
    Subnet,
    isolated_layout,
    loopback_layout,
    netns_name,
)
from tests.helpers.procs import free_port, port_free


def test_loopback_layout_gives_every_listener_its_own_free_port():
    ports = FreePorts()
    try:
        layout = loopback_layout(ports)
    finally:
        ports.release()
    assert [i.name for i in layout.instances] == [
        "web",
        "catalog-1",
        "catalog-2",
        "inventory",
        "loadgen",
    ]
    used = [layout.control.xds, layout.control.bootstrap, layout.control.api]
    for instance in layout.instances:
        assert instance.address == "127.0.0.1" and instance.netns is None
        sidecar = instance.sidecar
        used += [sidecar.inbound, sidecar.outbound, sidecar.admin, sidecar.metrics]
        if instance.app_port is not None:
            used.append(instance.app_port)
    assert len(used) == len(set(used)) == 3 + 5 * 4 + 4
    assert layout.get("loadgen").app_port is None and layout.entry.name == "loadgen"
    assert [i.name for i in layout.of_service("catalog")] == ["catalog-1", "catalog-2"]
    assert layout.get("web").upstream == "catalog" and layout.get("inventory").upstream is None
    assert not layout.isolated


def _free_block(size: int) -> int:
    """The first port of `size` consecutive free ports, below the ephemeral range (where
    no outgoing connection takes one meanwhile)."""
    for _ in range(50):
        base = free_port()
        if base + size < 32768 and all(port_free(p) for p in range(base, base + size)):
            return base
    raise RuntimeError("no block of free ports")


def test_port_base_is_consecutive_and_names_a_busy_port():
    base = _free_block(64)
    layout = loopback_layout(BasePorts(base))
    assert (layout.control.xds, layout.control.bootstrap, layout.control.api) == (
        base,
        base + 1,
        base + 2,
    )
    assert layout.get("web").app_port == base + 3
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", base + 1))
        busy.listen()
        with pytest.raises(UsageError, match=f"port {base + 1} on 127.0.0.1 is in use"):
            loopback_layout(BasePorts(base))
    with pytest.raises(UsageError, match="--port-base"):
        BasePorts(80)


def test_isolated_layout_uses_compose_ports_on_private_addresses():
    layout = isolated_layout(Subnet("10.213.9"), "4242")
    assert layout.isolated and layout.subnet is not None
    assert layout.subnet.cidr == "10.213.9.0/24" and layout.subnet.bridge_address == "10.213.9.1"
    assert (layout.control.address, layout.control.xds, layout.control.api) == (
        "10.213.9.2",
        15012,
        15014,
    )
    assert layout.control.netns == "gup-4242-control"
    web = layout.get("web")
    assert (web.address, web.app_port, web.sidecar.inbound, web.sidecar.outbound) == (
        "10.213.9.10",
        8080,
        15006,
        15001,
    )
    assert web.netns == netns_name("4242", "web") == "gup-4242-web"
    addresses = [i.address for i in layout.instances]
    assert len(set(addresses)) == len(addresses)
    hosts = layout.hosts()
    # a service with replicas resolves to its first one; each instance by its own name
    assert hosts["catalog"] == layout.get("catalog-1").address
    assert hosts["catalog-2"] == layout.get("catalog-2").address
    assert hosts["inventory"] == layout.get("inventory").address
