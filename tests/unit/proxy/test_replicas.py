"""Control-plane replicas (proxy/agent/replicas.py): address lists, failover order,
probing the preferred replica; pure, with a fake clock."""

from __future__ import annotations

import random
import ssl

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gossamer.errors import UsageError
from gossamer.proxy.agent.channels import ControlChannels
from gossamer.proxy.agent.replicas import (
    ReplicaSet,
    bootstrap_addresses,
    expand,
    fails_over,
    format_address,
    parse_addresses,
)


def test_one_address_parses_as_before():
    assert parse_addresses("control:15012", "--control") == (("control", 15012),)
    assert parse_addresses("[::1]:15012", "--control") == (("::1", 15012),)


def test_a_list_keeps_its_order_without_repeats():
    text = " a:15012, b:15012,,a:15012,10.0.0.3:1 "
    assert parse_addresses(text, "--control") == (("a", 15012), ("b", 15012), ("10.0.0.3", 1))


@pytest.mark.parametrize("text", ["", ",", "a", "a:", ":1", "a:0", "a:70000", "a:x", "a:1,b"])
def test_malformed_lists_name_the_flag(text):
    with pytest.raises(UsageError, match="--control"):
        parse_addresses(text, "--control")


def test_default_bootstrap_is_each_control_host_on_15011():
    control = (("a", 15012), ("b", 16012), ("a", 17012))
    assert bootstrap_addresses(control, 15011) == (("a", 15011), ("b", 15011))


def test_a_name_with_several_addresses_becomes_one_target_each():
    answers = {
        "many": ["10.0.0.1", "10.0.0.2"],
        "one": ["10.0.0.9"],
        "none": [],
        "localhost": ["::1", "127.0.0.1"],
    }
    got = expand(
        (("many", 15012), ("one", 15012), ("none", 15012), ("10.0.0.2", 15012)),
        lambda host, _port: answers[host],
    )
    assert expand((("localhost", 1),), lambda host, _port: answers[host]) == (("localhost", 1),)
    # one address: the name stays (the channel resolves it again at each connect)
    assert got == (("10.0.0.1", 15012), ("10.0.0.2", 15012), ("one", 15012), ("none", 15012))
    assert format_address(("::1", 1)) == "[::1]:1"


def test_only_unavailability_fails_over():
    assert fails_over("UNAVAILABLE") and fails_over("DEADLINE_EXCEEDED")
    assert not fails_over("PERMISSION_DENIED") and not fails_over("CANCELLED")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def replicas(n: int = 3, interval: float = 30.0) -> tuple[ReplicaSet, Clock]:
    clock = Clock()
    addresses = tuple((f"r{i}", 15012) for i in range(n))
    return ReplicaSet(addresses, probe_interval=interval, rng=random.Random(1), clock=clock), clock


def test_failover_walks_the_list_and_counts_moves():
    rs, _ = replicas()
    assert rs.preferred and rs.fresh
    assert rs.failed(0) and rs.current == 1 and rs.moves == 1
    # the other stream on the dead replica reports it too: no second move
    assert not rs.failed(0) and rs.current == 1 and rs.moves == 1
    assert rs.fresh  # r1 not tried yet: no back-off
    assert rs.failed(1) and rs.current == 2
    assert rs.fresh
    assert rs.failed(2) and rs.current == 0  # wraps around
    assert not rs.fresh and rs.round_done()  # every one failed in a row: back off
    rs.succeeded(0)
    assert rs.fresh and not rs.round_done()


def test_a_single_replica_never_moves_and_always_backs_off():
    rs, _ = replicas(1)
    assert not rs.failed(0) and rs.current == 0 and rs.moves == 0
    assert not rs.fresh


def test_the_preferred_replica_is_probed_with_jitter_and_taken_back():
    rs, clock = replicas(2, interval=10.0)
    assert not rs.probe_due()  # on the preferred one: nothing to probe
    rs.failed(0)
    wait = rs.probe_wait()
    assert 8.0 <= wait <= 12.0
    clock.now += wait - 0.01
    assert not rs.probe_due()
    clock.now += 0.02
    assert rs.probe_due()
    assert not rs.probed(answered=False) and rs.current == 1
    assert not rs.probe_due()  # the next probe is a whole interval later
    clock.now += 12.0
    assert rs.probe_due()
    assert rs.probed(answered=True)
    assert rs.current == 0 and rs.moves == 2 and not rs.probe_due()


@given(st.lists(st.integers(0, 4), max_size=40), st.integers(1, 5))
def test_current_is_always_a_valid_index_and_moves_only_on_current_failures(reports, n):
    rs, _ = replicas(n)
    for index in reports:
        before = (rs.current, rs.moves)
        moved = rs.failed(index % n)
        assert 0 <= rs.current < n
        assert moved == (index % n == before[0] and n > 1)
        assert rs.moves == before[1] + moved


async def test_control_channels_move_once_per_failure_and_notify():
    """ControlChannels (agent/channels.py) over the pure set: no connection is opened."""
    rs, _ = replicas(2)
    moved: list[str] = []
    channels = ControlChannels(rs, ssl.create_default_context())
    channels.on_move.append(lambda: moved.append(channels.target))
    ads, reg = channels.acquire(), channels.acquire()
    assert ads is reg and channels.target == "r0:15012"
    assert channels.retry_delay(1, random.Random(0), 5.0) < 0.2  # r1 untried: at once
    assert not channels.failed(ads, "PERMISSION_DENIED")  # every replica would say so
    assert channels.failed(ads, "UNAVAILABLE")
    assert not channels.failed(reg, "UNAVAILABLE")  # the same failure, seen twice
    assert moved == ["r1:15012"] and channels.current is not ads
    await channels.release(ads)
    await channels.release(reg)  # the last user of the old channel: closed now
    fresh = channels.acquire()
    assert fresh.target == "r1:15012"
    assert channels.failed(fresh, "DEADLINE_EXCEEDED")
    assert channels.target == "r0:15012" and moved[-1] == "r0:15012"
    assert channels.retry_delay(1, random.Random(0), 5.0) >= 0.125  # a round failed
    await channels.release(fresh)
    await channels.close()
