"""`gossamer proxy` flags reach the sidecar's options: parsed by the real CLI (click),
turned into ProxySettings and SidecarOptions by proxy/main.py, with nothing started."""

from __future__ import annotations

from typing import Any

import click

from gossamer.cli.proxy_cmd import proxy
from gossamer.contract import limits
from gossamer.proxy.config import NodeInfo
from gossamer.proxy.main import ProxySettings, _options

NODE = NodeInfo("web", "default", "", "", "gossamer.local")


def settings(*args: str) -> ProxySettings:
    ctx = proxy.make_context("proxy", ["--service", "web", *args])
    params: dict[str, Any] = dict(ctx.params)
    assert isinstance(ctx, click.Context)
    return ProxySettings(**params)


def test_protocol_limits_default_to_the_shared_defaults() -> None:
    server = _options(settings(), NODE, None).limits
    assert server.pipeline_depth == limits.PIPELINED_REQUESTS == 16
    assert server.h2_max_concurrent_streams == limits.H2_MAX_CONCURRENT_STREAMS == 256


def test_protocol_limit_flags_reach_the_servers() -> None:
    chosen = settings("--max-pipelined-requests", "2", "--h2-max-concurrent-streams", "7")
    server = _options(chosen, NODE, None).limits
    assert (server.pipeline_depth, server.h2_max_concurrent_streams) == (2, 7)


def test_control_replicas_bootstrap_and_state_dir_reach_the_agent(tmp_path) -> None:
    from gossamer.proxy.main import _agent_options

    state = tmp_path / "state"
    chosen = settings(
        "--control", "10.0.0.1:15012,10.0.0.2:16012", "--state-dir", str(state),
        "--control-probe-interval", "2.5",
    )  # fmt: skip
    agent = _agent_options(chosen, ())
    assert agent.control == (("10.0.0.1", 15012), ("10.0.0.2", 16012))
    assert agent.bootstrap == (("10.0.0.1", 15011), ("10.0.0.2", 15011))
    assert agent.state_dir == state and state.is_dir()  # made 0700 before anything starts
    assert agent.token == "" and agent.probe_interval == 2.5  # the state may replace it
    one = _agent_options(settings("--control", "10.0.0.1:15012", "--state-dir", str(state)), ())
    assert one.control == (("10.0.0.1", 15012),) and one.bootstrap == (("10.0.0.1", 15011),)
