"""`gossamer inject` across hosts: --node (the CA's host), --join, --control-replica."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gossamer.compose import multinode, names
from gossamer.compose.inject import inject_text, uninject_text
from gossamer.compose.options import InjectOptions
from gossamer.compose.validate import semantic_problems
from gossamer.errors import UsageError
from tests.helpers.compose import plain

APP = """\
services:
  catalog:   # the shop's catalog
    image: shop/catalog
    ports: ["8080:8080"]
  Stock_DB:
    image: shop/db
    expose: [5432]
"""
FIRST: dict[str, Any] = {"node": "host-1", "advertise_host": "10.0.0.1"}
JOIN: dict[str, Any] = {"node": "host-2", "advertise_host": "10.0.0.2", "join": ("10.0.0.1:15012",)}


def inject(**kwargs: Any) -> tuple[dict[str, Any], str]:
    result = inject_text(APP, InjectOptions(**kwargs), source="compose.yaml")
    assert semantic_problems(APP, result.text) == []
    return plain(result.text), result.text


def args_after(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def test_the_first_host_gets_a_gateway_and_publishes_its_control_plane():
    data, _ = inject(**FIRST, gateway_port=25443)
    services = data["services"]
    gateway = services[names.GATEWAY]
    command = gateway["command"]
    assert command[:2] == ["gateway", "--node"] and args_after(command, "--node") == "host-1"
    assert args_after(command, "--listen") == "0.0.0.0:15443"
    assert args_after(command, "--advertise") == "10.0.0.1:25443"
    assert args_after(command, "--control") == "gossamer-control:15012"
    assert gateway["ports"] == ["25443:15443"]  # every interface: other hosts dial it
    assert gateway["secrets"] == ["gossamer-token-gossamer-gateway"]
    assert data["secrets"]["gossamer-token-gossamer-gateway"] == {
        "file": ".gossamer/tokens/gossamer-gateway.token"
    }
    control = services[names.CONTROL]
    assert control["ports"] == ["127.0.0.1:15014:15014", "15011:15011", "15012:15012"]
    proxy = services["catalog-proxy"]["command"]
    assert args_after(proxy, "--node") == "host-1"
    assert args_after(proxy, "--control") == "gossamer-control:15012"
    assert "--advertise-address" not in proxy  # the control plane sees its real address


def test_a_joining_host_has_no_ca_and_no_control_plane():
    data, text = inject(**JOIN, mode="explicit")
    services = data["services"]
    assert names.CONTROL not in services and names.CA_SECRET not in data["secrets"]
    assert "configs" not in data and ".gossamer/ca" not in text
    proxy = services["catalog-proxy"]
    command = proxy["command"]
    assert args_after(command, "--control") == "10.0.0.1:15012"
    assert args_after(command, "--node") == "host-2"
    assert args_after(command, "--advertise-address") == "catalog"
    assert "--bootstrap" not in command  # the --control hosts' 15011
    assert "depends_on" not in proxy  # nothing local to wait for (explicit: no init)
    gateway = services[names.GATEWAY]["command"]
    assert args_after(gateway, "--control") == "10.0.0.1:15012"
    assert args_after(gateway, "--advertise") == "10.0.0.2:15443"
    assert "depends_on" not in services[names.GATEWAY]


def test_a_name_that_is_no_dns_label_registers_its_label_which_becomes_an_alias():
    data, _ = inject(**JOIN)
    command = data["services"]["Stock_DB-proxy"]["command"]
    assert args_after(command, "--advertise-address") == "stock-db"
    aliases = data["services"]["Stock_DB-netns"]["networks"]["default"]["aliases"]
    assert aliases == ["Stock_DB", "stock-db"]


def test_a_replica_is_preferred_and_tokens_go_to_the_joined_control_planes():
    data, _ = inject(**{**JOIN, "join": ("10.0.0.1:15012", "10.0.0.3:15012")},
                     control_replica=True)  # fmt: skip
    services = data["services"]
    command = services["catalog-proxy"]["command"]
    assert (
        args_after(command, "--control") == "gossamer-control:15012,10.0.0.1:15012,10.0.0.3:15012"
    )
    assert args_after(command, "--bootstrap") == "10.0.0.1:15011,10.0.0.3:15011"
    assert services["catalog-proxy"]["depends_on"][names.CONTROL] == {
        "condition": "service_healthy"
    }
    assert services[names.CONTROL]["ports"][-2:] == ["15011:15011", "15012:15012"]
    assert data["secrets"][names.CA_SECRET] == {"file": ".gossamer/ca"}
    gateway = services[names.GATEWAY]["command"]  # the same replicas as its sidecars
    assert args_after(gateway, "--control") == args_after(command, "--control")
    assert args_after(gateway, "--bootstrap") == "10.0.0.1:15011,10.0.0.3:15011"


@pytest.mark.parametrize(
    "options",
    [
        pytest.param(FIRST, id="first"),
        pytest.param({**JOIN, "mode": "explicit"}, id="join"),
        pytest.param(
            {**JOIN, "control_replica": True, "etcd": "etcd://e:2379/gossamer"}, id="replica"
        ),
    ],
)
def test_injecting_again_changes_nothing_and_uninject_restores_the_bytes(options):
    first = inject_text(APP, InjectOptions(**options), source="compose.yaml")
    again = inject_text(first.text, InjectOptions(**options), source="compose.yaml")
    assert not again.changed and again.text == first.text
    assert uninject_text(first.text, source="compose.yaml") == APP
    # the options survive the record: re-injecting as a single host is possible too
    single = inject_text(first.text, InjectOptions(), source="compose.yaml")
    assert single.changed and names.GATEWAY not in plain(single.text)["services"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"join": ("a:15012",)}, "--join needs --node"),
        ({"node": "n1"}, "--node needs --advertise-host"),
        ({"node": "N_1", "advertise_host": "h"}, "--node"),
        ({"advertise_host": "h"}, "--advertise-host goes with --node"),
        ({**FIRST, "control_replica": True}, "--control-replica goes with --join"),
        ({**JOIN, "etcd": "etcd://e:2379/gossamer"}, "--etcd goes with --control-replica"),
        ({**FIRST, "bootstrap": "volumes", "trust_domain": "x.y"}, "--bootstrap files"),
        ({**JOIN, "observability": True}, "--with-observability"),
        ({**FIRST, "advertise_host": "bad host"}, "is not an IP or host name"),
    ],
)
def test_options_that_do_not_fit_together_are_refused(options, message):
    with pytest.raises(UsageError, match=message):
        InjectOptions(**options)


def test_join_and_etcd_addresses():
    assert multinode.parse_join("10.0.0.1, b:16012,10.0.0.1:15012") == (
        "10.0.0.1:15012",
        "b:16012",
    )
    assert multinode.parse_join("[fd00::1]") == ("[fd00::1]:15012",)
    for bad in ("", "a:b", "a:70000", "a b"):
        with pytest.raises(UsageError, match="--join"):
            multinode.parse_join(bad)
    assert multinode.parse_etcd("e1:2379,e2:2379") == "etcd://e1:2379,e2:2379/gossamer"
    assert multinode.parse_etcd("etcd://e1:2379/mesh") == "etcd://e1:2379/mesh"
    with pytest.raises(UsageError, match="--etcd"):
        multinode.parse_etcd("e1")


def test_token_file_names():
    assert names.join_token_name("catalog") == "catalog.token"
    assert names.join_token_name("catalog", index=2) == "catalog-2.token"
    assert names.join_token_name("gateway", "gossamer-system") == "gateway.gossamer-system.token"


def test_a_user_service_named_like_the_gateway_is_refused(tmp_path: Path):
    text = APP + "  gossamer-gateway:\n    image: x\n"
    from gossamer.errors import ConfigError

    with pytest.raises(ConfigError, match="gossamer-gateway"):
        inject_text(text, InjectOptions(**FIRST), source="compose.yaml")
    # without --node the name is free
    inject_text(text, InjectOptions(), source="compose.yaml")


def test_host_ports_the_file_already_publishes_are_refused():
    text = APP.replace('ports: ["8080:8080"]', 'ports: ["8080:8080", "15443:443"]')
    with pytest.raises(UsageError, match=r"host port\(s\) 15443 already published"):
        inject_text(text, InjectOptions(**FIRST), source="compose.yaml")
    moved = inject_text(text, InjectOptions(**FIRST, gateway_port=16443), source="compose.yaml")
    assert plain(moved.text)["services"][names.GATEWAY]["ports"] == ["16443:15443"]
    text = APP.replace('ports: ["8080:8080"]', 'ports: ["8080:8080", "15012:80"]')
    with pytest.raises(UsageError, match="15012 already published"):
        inject_text(text, InjectOptions(**FIRST), source="compose.yaml")
    inject_text(text, InjectOptions(**JOIN), source="compose.yaml")  # no control plane here
