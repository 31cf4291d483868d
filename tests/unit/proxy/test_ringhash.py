"""The consistent-hash ring: removing or adding a host moves only that host's keys."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gossamer.proxy.upstream.balancer import Ring, hash64, host_points

KEYS = [f"key-{i}".encode() for i in range(400)]


def owners(hosts: list[tuple[tuple[str, int], int]]) -> dict[bytes, tuple[str, int]]:
    ring = Ring(hosts)
    return {k: hosts[ring.lookup(k)][0] for k in KEYS}


hosts_st = st.lists(
    st.tuples(
        st.tuples(
            st.sampled_from(
                ["10.1.0.1", "10.1.0.2", "10.1.0.3", "10.1.0.4", "10.1.0.5", "10.1.0.6"]
            ),
            st.integers(1000, 1003),
        ),
        st.integers(1, 3),
    ),
    min_size=2,
    max_size=8,
    unique_by=lambda h: h[0],
)


@given(hosts_st, st.data())
@settings(max_examples=60, deadline=None)
def test_removing_a_host_moves_only_its_keys(hosts, data):
    gone = data.draw(st.sampled_from(hosts))
    before = owners(hosts)
    after = owners([h for h in hosts if h is not gone])
    for key in KEYS:
        if before[key] != gone[0]:
            assert after[key] == before[key]
        else:
            assert after[key] != gone[0]


@given(hosts_st, st.data())
@settings(max_examples=60, deadline=None)
def test_adding_a_host_only_takes_keys_for_itself(hosts, data):
    newcomer = (("10.9.9.9", 1), data.draw(st.integers(1, 3)))
    before = owners(hosts)
    after = owners([*hosts, newcomer])
    for key in KEYS:
        assert after[key] in (before[key], newcomer[0])


def test_order_of_hosts_does_not_matter():
    hosts = [(("10.2.0.1", 1), 1), (("10.2.0.2", 1), 2), (("10.2.0.3", 1), 1)]
    assert owners(hosts) == owners(list(reversed(hosts)))


def test_weights_scale_the_share_of_keys():
    hosts = [(("10.3.0.1", 1), 1), (("10.3.0.2", 1), 3)]
    ring = Ring(hosts)
    keys = [f"k{i}".encode() for i in range(8000)]
    share = sum(ring.lookup(k) == 1 for k in keys) / len(keys)
    assert 0.65 < share < 0.85


def test_points_and_hash_are_stable():
    assert hash64(b"abc") == hash64(b"abc")
    assert host_points("10.0.0.1", 15006, 1) == host_points("10.0.0.1", 15006, 1)
    assert len(host_points("10.0.0.1", 15006, 2)) == 2 * len(host_points("10.0.0.1", 15006, 1))


def test_walk_visits_every_host_once():
    hosts = [((f"10.4.0.{i}", 1), 1) for i in range(6)]
    ring = Ring(hosts)
    order = list(ring.walk(b"x"))
    assert sorted(order) == list(range(6))
    assert order[0] == ring.lookup(b"x")
