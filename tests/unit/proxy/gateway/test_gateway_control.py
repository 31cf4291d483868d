"""`gossamer gateway`'s control-plane replicas: `--control a,b`, `--bootstrap`,
`--control-probe-interval` parsed by the real CLI (click) into the agent's options, and
the bootstrap that tries the addresses in turn (shared with the sidecar's agent)."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from typing import Any

import click
import pytest

from gossamer.cli.gateway_cmd import gateway
from gossamer.errors import UpstreamConnectError, UsageError
from gossamer.proxy.agent.bootstrap import WorkloadCredentials, bootstrap_in_turn
from gossamer.proxy.gateway.main import GatewaySettings, agent_options

TOKEN = "gst1.abcdefgh." + "a" * 32 + ".sha256:" + "0" * 64


def settings(*args: str) -> GatewaySettings:
    base = ["--node", "node-1", "--advertise", "10.0.0.1:15443"]
    ctx = gateway.make_context("gateway", [*base, *args])
    assert isinstance(ctx, click.Context)
    params: dict[str, Any] = dict(ctx.params)
    return GatewaySettings(**params)


def test_several_control_replicas_and_their_bootstrap_ports(monkeypatch) -> None:
    monkeypatch.setenv("GOSSAMER_TOKEN", TOKEN)
    chosen = settings("--control", "10.0.0.1:15012, 10.0.0.2:16012,10.0.0.1:15012",
                      "--control-probe-interval", "1.5")  # fmt: skip
    options = agent_options(chosen)
    assert options.control == (("10.0.0.1", 15012), ("10.0.0.2", 16012))  # no repeats
    assert options.bootstrap == (("10.0.0.1", 15011), ("10.0.0.2", 15011))
    assert options.probe_interval == 1.5 and options.advertise == ("10.0.0.1", 15443)


def test_one_control_address_and_an_explicit_bootstrap_list(monkeypatch) -> None:
    monkeypatch.setenv("GOSSAMER_TOKEN", TOKEN)
    options = agent_options(
        settings("--control", "[::1]:15012", "--bootstrap", "10.0.0.9:1,10.0.0.8:2")
    )
    assert options.control == (("::1", 15012),)
    assert options.bootstrap == (("10.0.0.9", 1), ("10.0.0.8", 2))
    assert options.probe_interval == 30.0  # the sidecar's default


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--control", "10.0.0.1:15012,nope"], "--control 'nope': expected HOST:PORT or a"),
        (["--control", " , "], "--control is empty"),
        (["--control", "a:1", "--bootstrap", "b:0"], "--bootstrap 'b:0': expected HOST:PORT"),
    ],
)
def test_bad_addresses_are_one_line_usage_errors(monkeypatch, args, message) -> None:
    monkeypatch.setenv("GOSSAMER_TOKEN", TOKEN)
    with pytest.raises(UsageError) as caught:
        agent_options(settings(*args))
    assert caught.value.message.startswith(message), caught.value.message
    assert "\n" not in caught.value.message


def test_the_advertised_address_takes_one_address_not_a_list(monkeypatch) -> None:
    monkeypatch.setenv("GOSSAMER_TOKEN", TOKEN)
    with pytest.raises(UsageError) as caught:
        agent_options(settings("--control", "a:1", "--advertise", "a:1,b:2"))
    assert "comma-separated" not in caught.value.message


def test_bootstrap_tries_each_address_in_turn_then_backs_off(monkeypatch) -> None:
    tried: list[tuple[str, int]] = []
    slept: list[float] = []
    now = dt.datetime.now(dt.UTC)
    creds = WorkloadCredentials(b"", b"", b"", "spiffe://td/ns/gossamer-system/sa/gateway",
                                now, now)  # fmt: skip

    async def certify(host: str, port: int) -> WorkloadCredentials:
        tried.append((host, port))
        if len(tried) < 4:  # a, b, then a again after the back-off: down; b answers
            raise UpstreamConnectError(f"{host}:{port} refused")
        return creds

    async def sleep(delay: float) -> None:
        slept.append(delay)

    monkeypatch.setattr(asyncio, "sleep", sleep)
    got = asyncio.run(
        bootstrap_in_turn([("a", 1), ("b", 2)], certify, random.Random(1), max_backoff=5.0)
    )
    assert got is creds
    assert tried == [("a", 1), ("b", 2), ("a", 1), ("b", 2)]
    assert len(slept) == 1 and 0 < slept[0] <= 5.0  # one back-off, after the whole round


def test_bootstrap_raises_what_is_not_an_unreachable_control_plane() -> None:
    from gossamer.errors import AuthorizationDenied

    async def certify(host: str, port: int) -> WorkloadCredentials:
        raise AuthorizationDenied("join token refused")

    with pytest.raises(AuthorizationDenied):
        asyncio.run(bootstrap_in_turn([("a", 1), ("b", 2)], certify, random.Random(1), 5.0))
