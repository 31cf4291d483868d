"""Transparent-mode destinations claimed by an endpoint (issue 17 finding 10 follow-up).

An endpoint's verified address names its cluster; an address it only claims (an alias,
which the control plane cannot check) never takes over a verified one and is pinned:
the connection goes to that same address alone (router.py `destination_index`,
upstream/pinned.py, `ClusterManager.prepare`).
"""

from __future__ import annotations

import asyncio
import random

from gossamer.proxy.config import Cluster, Endpoint, NodeInfo, ProxyConfig
from gossamer.proxy.routing.router import destination_index
from gossamer.proxy.transport.tls_contexts import CredentialHolder
from gossamer.proxy.upstream.balancer import Host
from gossamer.proxy.upstream.cluster import ClusterManager
from gossamer.proxy.upstream.pinned import PinnedRuntime

EVIL = Cluster("outbound|8080||evil", "evil", 8080, tls=False)
CATALOG = Cluster("outbound|8080||catalog", "catalog", 8080, tls=False)


def test_a_verified_address_wins_over_any_claim_whatever_the_cluster_order() -> None:
    # evil comes first and claims catalog's address and an address outside the mesh
    claimant = Endpoint("10.0.0.66", 15006, aliases=("10.0.0.2", "10.0.9.9"))
    for clusters in (
        {EVIL.name: EVIL, CATALOG.name: CATALOG},
        {CATALOG.name: CATALOG, EVIL.name: EVIL},
    ):
        index = destination_index(
            clusters, {EVIL.name: (claimant,), CATALOG.name: (Endpoint("10.0.0.2", 15006),)}
        )
        assert index.clusters == {("10.0.0.66", 8080): EVIL.name, ("10.0.0.2", 8080): CATALOG.name}
        # the plain server's address is only claimed: pinned, at that very address
        assert set(index.pinned) == {("10.0.9.9", 8080)}
        name, pinned = index.pinned[("10.0.9.9", 8080)]
        assert name == EVIL.name
        assert (pinned.address, pinned.port, pinned.aliases, pinned.primary) == (
            "10.0.9.9",
            15006,
            (),
            "",
        )


def test_the_verified_address_of_an_endpoint_reached_at_another_is_its_primary() -> None:
    # reached at its claimed address on our network; verified elsewhere
    ep = Endpoint("172.21.0.3", 15006, aliases=("172.20.0.3",), primary="172.20.0.3", tls=False)
    index = destination_index({CATALOG.name: CATALOG}, {CATALOG.name: (ep,)})
    assert index.clusters == {("172.20.0.3", 8080): CATALOG.name}
    name, pinned = index.pinned[("172.21.0.3", 8080)]
    assert name == CATALOG.name and pinned.key == ep.key and not pinned.tls


def test_an_address_claimed_twice_is_pinned_once_to_the_first_claim() -> None:
    first = Endpoint("10.0.0.5", 15006, aliases=("10.0.9.9",))
    second = Endpoint("10.0.0.6", 15007, aliases=("10.0.9.9", "10.0.0.5"))
    index = destination_index(
        {EVIL.name: EVIL, CATALOG.name: CATALOG},
        {
            EVIL.name: (first, second),
            CATALOG.name: (Endpoint("10.0.0.7", 15006, aliases=("10.0.9.9",)),),
        },
    )
    name, pinned = index.pinned[("10.0.9.9", 8080)]
    assert name == EVIL.name and pinned.key == ("10.0.9.9", 15006)
    # another endpoint's verified address is never a pin
    assert ("10.0.0.5", 8080) not in index.pinned
    assert index.clusters[("10.0.0.5", 8080)] == EVIL.name
    # on another service port the same address is another destination
    other_port = Cluster("outbound|9090||evil", "evil", 9090, tls=False)
    index = destination_index({other_port.name: other_port}, {other_port.name: (first,)})
    assert set(index.pinned) == {("10.0.9.9", 9090)}


def manager() -> ClusterManager:
    return ClusterManager(CredentialHolder(), rng=random.Random(1), clock=lambda: 0.0)


def config(*endpoints: Endpoint) -> ProxyConfig:
    return ProxyConfig(
        node=NodeInfo("web"), clusters={CATALOG.name: CATALOG}, endpoints={CATALOG.name: endpoints}
    )


def test_prepare_pins_a_claimed_destination_to_one_host_at_that_address() -> None:
    reached_at_claim = Endpoint("172.21.0.3", 15006, aliases=("172.20.0.3",), primary="172.20.0.3")
    multi = Endpoint("10.0.0.1", 15006, aliases=("10.0.1.1",))
    snap, commit = manager().prepare(config(reached_at_claim, multi))
    commit()
    runtime = snap.clusters[CATALOG.name]
    assert snap.destinations == {
        ("172.20.0.3", 8080): CATALOG.name,
        ("10.0.0.1", 8080): CATALOG.name,
    }
    assert set(snap.pinned) == {("172.21.0.3", 8080), ("10.0.1.1", 8080)}

    # the address this sidecar reaches the endpoint at anyway: its own host and pool
    at_claim = snap.pinned[("172.21.0.3", 8080)]
    assert isinstance(at_claim, PinnedRuntime) and at_claim.config is CATALOG
    assert at_claim.hosts == [runtime.hosts[0]]
    assert at_claim.pools[("172.21.0.3", 15006)] is runtime.pools[("172.21.0.3", 15006)]
    assert at_claim.breaker is runtime.breaker

    # another claimed address: a host and pool of its own, there and nowhere else
    other = snap.pinned[("10.0.1.1", 8080)]
    (host,) = other.hosts
    assert host.endpoint.key == ("10.0.1.1", 15006) and host not in runtime.hosts
    for _ in range(5):  # retries and ejections have nowhere else to go
        assert other.choose([], [host]) is host
    host.ejected_until = 1e9
    other.refresh(0.0)
    assert other.choose([], []) is host and other.excluded == []


def test_pinned_hosts_and_pools_are_kept_across_configurations() -> None:
    m = manager()
    ep = Endpoint("10.0.0.1", 15006, aliases=("10.0.1.1",))
    first, commit = m.prepare(config(ep))
    commit()
    again, commit = m.prepare(config(ep, Endpoint("10.0.0.2", 15006)))
    commit()
    dst = ("10.0.1.1", 8080)
    assert again.pinned[dst].hosts[0] is first.pinned[dst].hosts[0]
    key = ("10.0.1.1", 15006)
    assert again.pinned[dst].pools[key] is first.pinned[dst].pools[key]
    gone, commit = m.prepare(config(Endpoint("10.0.0.1", 15006)))
    commit()
    assert gone.pinned == {}
    assert first.pinned[dst].pools[key] not in m.pools()


async def test_a_pinned_connection_goes_to_the_original_destination_address() -> None:
    """Not to the claimant's own address: the listener there never hears of it."""
    accepted: dict[str, int] = {"127.0.0.1": 0, "127.0.0.2": 0}

    def counting(address: str) -> asyncio.Protocol:
        accepted[address] += 1
        return asyncio.Protocol()

    loop = asyncio.get_running_loop()
    own = await loop.create_server(lambda: counting("127.0.0.1"), "127.0.0.1", 0)
    port = own.sockets[0].getsockname()[1]
    claimed = await loop.create_server(lambda: counting("127.0.0.2"), "127.0.0.2", port)
    try:
        m = manager()
        snap, commit = m.prepare(
            config(Endpoint("127.0.0.1", port, aliases=("127.0.0.2",), tls=False))
        )
        commit()
        pinned = snap.pinned[("127.0.0.2", 8080)]
        host = pinned.choose([], [])
        assert isinstance(host, Host)
        conn, reused = await pinned.pools[host.endpoint.key].acquire()
        transport = await m.open(pinned.config, host.endpoint, asyncio.Protocol(), 1.0)
        await asyncio.sleep(0.05)
        assert accepted == {"127.0.0.1": 0, "127.0.0.2": 2} and not reused
        transport.close()
        conn.close()
        m.close()
    finally:
        own.close()
        claimed.close()
