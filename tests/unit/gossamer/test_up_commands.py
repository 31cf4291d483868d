"""The command lines `gossamer up` starts: every one parses with the real CLI."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import pytest

import gossamer
from gossamer.cli.main import cli
from gossamer.up import commands
from gossamer.up.layout import FreePorts, Subnet, isolated_layout, loopback_layout
from gossamer.up.statedir import StateDir


def loopback():
    ports = FreePorts()
    layout = loopback_layout(ports)
    ports.release()
    return layout


def gossamer_args(argv: list[str]) -> list[str]:
    """The arguments after `python -m gossamer.cli.main` (and any netns wrapper)."""
    start = argv.index("gossamer.cli.main") + 1
    assert argv[start - 2 : start] == ["-m", "gossamer.cli.main"]
    assert argv[start - 3] == sys.executable
    return argv[start:]


def parses(args: list[str], depth: int) -> None:
    """Let click parse the options of the command `args[:depth]` names (without running
    it): an unknown option or a bad value raises."""
    command: click.Command = cli
    ctx = click.Context(cli)
    for name in args[:depth]:
        assert isinstance(command, click.Group)
        sub = command.get_command(ctx, name)
        assert sub is not None, name
        command = sub
    command.make_context(args[depth - 1], args[depth:])


def test_loopback_apps_use_their_sidecar_as_proxy(tmp_path: Path):
    layout = loopback()
    settings = commands.Settings(rate=7, fail_rate=0.1)
    web = layout.get("web")
    argv = gossamer_args(commands.app(layout, web, settings))
    assert argv[:4] == ["demo", "app", "--role", "web"]
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert argv[argv.index("--port") + 1] == str(web.app_port)
    assert argv[argv.index("--upstream") + 1] == "http://catalog:8080"
    assert argv[argv.index("--proxy") + 1] == f"http://127.0.0.1:{web.sidecar.outbound}"
    assert "--fail-rate" not in argv
    inventory = gossamer_args(commands.app(layout, layout.get("inventory"), settings))
    assert "--upstream" not in inventory
    assert inventory[inventory.index("--fail-rate") + 1] == "0.1"
    loadgen = gossamer_args(commands.loadgen(layout, layout.entry, settings))
    assert loadgen[loadgen.index("--url") + 1] == "http://web:8080/"
    assert loadgen[loadgen.index("--rate") + 1] == "7"
    assert loadgen[loadgen.index("--proxy") + 1].endswith(f":{layout.entry.sidecar.outbound}")
    parses(gossamer_args(commands.app(layout, web, settings)), 2)
    parses(gossamer_args(commands.loadgen(layout, layout.entry, settings)), 2)
    with pytest.raises(click.UsageError):
        parses(["demo", "app", "--no-such-flag"], 2)


def test_sidecar_command_names_the_control_plane_and_its_token(tmp_path: Path):
    layout = loopback()
    state = StateDir(tmp_path)
    catalog = layout.get("catalog-2")
    argv = gossamer_args(commands.sidecar(layout, catalog))
    assert argv[argv.index("--service") + 1] == "catalog"
    assert argv[argv.index("--node") + 1] == "catalog-2"
    assert argv[argv.index("--control") + 1] == f"127.0.0.1:{layout.control.xds}"
    assert argv[argv.index("--bootstrap") + 1] == f"127.0.0.1:{layout.control.bootstrap}"
    assert "--token-file" not in argv and "--token" not in argv  # not on a command line
    (tmp_path / "tokens").mkdir()
    state.token_file("catalog").write_text("gst1.x.y.z\n")
    assert commands.sidecar_env(catalog, state) == {
        "GOSSAMER_TOKEN": "gst1.x.y.z",
        "GOSSAMER_SERVICE_VERSION": gossamer.__version__,
    }
    assert argv[argv.index("--inbound-port") + 1] == str(catalog.sidecar.inbound)
    assert argv[argv.index("--inbound-address") + 1] == "127.0.0.1"
    assert argv[argv.index("--instance-id") + 1] == "catalog-2"
    assert argv[argv.index("--advertise-address") + 1] == "127.0.0.1"
    assert argv[argv.index("--app-port") + 1] == f"8080:{catalog.app_port}/http"
    loadgen = gossamer_args(commands.sidecar(layout, layout.entry))
    assert "--app-port" not in loadgen and "--state-dir" not in loadgen
    kept = gossamer_args(commands.sidecar(layout, catalog, state.sidecar_state("catalog-2")))
    assert kept[kept.index("--state-dir") + 1] == str(tmp_path / "sidecars" / "catalog-2")


def test_isolated_commands_run_in_the_namespace_as_other_users(tmp_path: Path):
    layout = isolated_layout(Subnet("10.213.3"), "99")
    state = StateDir(tmp_path)
    web = layout.get("web")
    app = commands.app(layout, web, commands.Settings())
    assert app[:4] == ["ip", "netns", "exec", "gup-99-web"]
    assert app[4:9] == ["setpriv", "--pdeathsig", "TERM", "--reuid=65534", "--regid=65534"]
    args = gossamer_args(app)
    assert "--proxy" not in args  # transparent: iptables hands connections to the sidecar
    assert args[args.index("--host") + 1] == "0.0.0.0"
    sidecar = commands.sidecar(layout, web)
    assert sidecar[:4] == ["ip", "netns", "exec", "gup-99-web"] and "--reuid=1337" in sidecar
    control = commands.control_plane(layout, state)
    assert control[:4] == ["ip", "netns", "exec", "gup-99-control"]
    assert "setpriv" not in control
    ipt = gossamer_args(commands.iptables_install(web))
    assert ipt[:3] == ["proxy", "iptables", "install"]
    assert ipt[ipt.index("--proxy-uid") + 1] == "1337"
    # the app's DNS to the sidecar, which listens there
    assert ipt[ipt.index("--dns-port") + 1] == "15053"
    assert sidecar[sidecar.index("--dns-port") + 1] == "15053"
    parses(ipt, 3)
    assert "--no-inbound" in commands.iptables_install(layout.entry)


def test_control_plane_command_parses(tmp_path: Path):
    layout = loopback()
    parses(gossamer_args(commands.control_plane(layout, StateDir(tmp_path))), 1)
