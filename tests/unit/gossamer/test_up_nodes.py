"""`gossamer up --nodes N` as a plan: placement, ports, commands, firewall, network
commands (a fake runner records them), the state directory and the refusals. The real
nodes are exercised by tests/e2e/test_up_nodes.py."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from gossamer.certs.ca import CertificateAuthority
from gossamer.certs.tokens import TokenStore
from gossamer.control.config import load_mesh
from gossamer.errors import UsageError
from gossamer.up import commands, netns, nodes, report
from gossamer.up.layout import Subnet
from gossamer.up.session import UpOptions, check_options, run
from gossamer.up.statedir import StateDir, prepare
from gossamer.up.summary import Snapshot, render
from tests.unit.gossamer.test_up_commands import gossamer_args, parses
from tests.unit.gossamer.test_up_netns import FakeRun

SUBNET = Subnet("10.213.9")


def three():
    return nodes.nodes_layout(SUBNET, "777", 3)


def test_three_nodes_spread_the_chain_and_share_each_node_address():
    layout = three()
    where = {i.name: (i.node, i.address, i.zone) for i in layout.instances}
    assert where == {
        "web": ("node-1", "10.213.9.11", "zone-a"),
        "loadgen": ("node-1", "10.213.9.11", "zone-a"),
        "catalog-1": ("node-2", "10.213.9.12", "zone-a"),
        "catalog-2": ("node-3", "10.213.9.13", "zone-b"),
        "inventory": ("node-3", "10.213.9.13", "zone-b"),
    }
    assert [n.netns for n in layout.nodes] == [f"gup-777-node-{k}" for k in (1, 2, 3)]
    assert all(i.netns == layout.node(i.node or "").netns for i in layout.instances)
    assert [n.etcd for n in layout.nodes] == [True, True, True]
    assert layout.control == layout.nodes[0].control and layout.isolated
    assert not layout.transparent
    # two instances on one node get different ports; the first slot's are the same everywhere
    inv, cat = layout.get("inventory"), layout.get("catalog-2")
    assert (cat.app_port, cat.sidecar.inbound, cat.sidecar.metrics) == (8080, 15100, 15103)
    assert (inv.app_port, inv.sidecar.inbound, inv.sidecar.metrics) == (8081, 15110, 15113)


@pytest.mark.parametrize(
    ("count", "expected"),
    [
        (1, {"loadgen": 1, "web": 1, "catalog-1": 1, "catalog-2": 1, "inventory": 1}),
        (2, {"loadgen": 1, "web": 1, "catalog-1": 2, "catalog-2": 2, "inventory": 2}),
        (4, {"loadgen": 1, "web": 1, "catalog-1": 2, "catalog-2": 3, "inventory": 4}),
    ],
)
def test_placement_for_other_counts(count: int, expected: dict[str, int]):
    assert nodes.placement(count) == expected
    layout = nodes.nodes_layout(SUBNET, "1", count)
    assert [n.etcd for n in layout.nodes] == [k <= 3 for k in range(1, count + 1)]
    ports = [
        (i.node, p) for i in layout.instances for p in (i.app_port, *i.sidecar.__dict__.values())
    ]
    assert len(ports) == len(set(ports))  # no port twice on one node


@pytest.mark.parametrize("count", [0, -1, 5, 40])
def test_node_count_out_of_bounds_is_refused_naming_the_bound(count: int):
    with pytest.raises(UsageError, match=rf"--nodes {count}: expected 1 to 4"):
        nodes.check_count(count)


def test_sidecars_prefer_their_own_replica_then_the_others():
    layout = three()
    argv = commands.sidecar(layout, layout.get("catalog-1"))
    assert argv[:4] == ["ip", "netns", "exec", "gup-777-node-2"]
    args = gossamer_args(argv)
    parses(args, 1)
    assert (
        args[args.index("--control") + 1] == "10.213.9.12:15012,10.213.9.11:15012,10.213.9.13:15012"
    )
    assert (
        args[args.index("--bootstrap") + 1]
        == "10.213.9.12:15011,10.213.9.11:15011,10.213.9.13:15011"
    )
    assert args[args.index("--node") + 1] == "node-2" and args[args.index("--zone") + 1] == "zone-a"
    assert "--dns-port" not in args  # several sidecars share the node's namespace
    assert args[args.index("--advertise-address") + 1] == "10.213.9.12"
    assert args[args.index("--inbound-port") + 1] == "15100"
    # explicit mode: the app calls through its sidecar, on the node's loopback
    app = gossamer_args(commands.app(layout, layout.get("web"), commands.Settings()))
    assert app[app.index("--proxy") + 1] == "http://127.0.0.1:15101"
    assert app[app.index("--host") + 1] == "127.0.0.1"
    parses(app, 2)


def test_replica_gateway_and_etcd_commands(tmp_path: Path):
    layout = three()
    state = StateDir(tmp_path, "node-1")
    node = layout.nodes[2]
    control = gossamer_args(commands.control_plane(layout, state, node))
    assert control[control.index("--config") + 1] == str(tmp_path / "nodes/node-3/mesh.yaml")
    parses(control, 1)
    gateway = commands.gateway(layout, node)
    assert gateway[:4] == ["ip", "netns", "exec", "gup-777-node-3"] and "--reuid=1337" in gateway
    args = gossamer_args(gateway)
    parses(args, 1)
    assert args[args.index("--advertise") + 1] == "10.213.9.13:15443"
    assert args[args.index("--listen") + 1] == "0.0.0.0:15443"
    # every replica, its own node's first (the gateway fails over as sidecars do)
    assert (
        args[args.index("--control") + 1] == "10.213.9.13:15012,10.213.9.11:15012,10.213.9.12:15012"
    )
    assert args[args.index("--zone") + 1] == "zone-b"
    etcd = commands.etcd(layout, node, state)
    assert etcd[:5] == ["ip", "netns", "exec", "gup-777-node-3", "etcd"]
    assert "--listen-client-urls=http://10.213.9.13:2379" in etcd
    assert (
        "--initial-cluster=node-1=http://10.213.9.11:2380,node-2=http://10.213.9.12:2380,"
        "node-3=http://10.213.9.13:2380"
    ) in etcd
    assert nodes.etcd_store_url(layout) == (
        "etcd://10.213.9.11:2379,10.213.9.12:2379,10.213.9.13:2379/gossamer"
    )


def test_firewall_opens_gateway_replica_etcd_and_metrics_ports_only():
    layout = three()
    rules = nodes.firewall_rules(layout, layout.nodes[2])
    output = [r for r in rules if r[0] == "OUTPUT"]
    assert output == [["OUTPUT", "-p", "tcp", "--syn", "-m", "multiport", "--dports", "2379,2380",
                       "-m", "owner", "!", "--uid-owner", "0", "-j", "REJECT"]]  # fmt: skip
    rules = [r for r in rules if r[0] == "INPUT"]
    assert rules[0][-4:] == ["--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"]
    assert rules[-1] == ["INPUT", "-i", "eth0", "-j", "DROP"]
    opened = {int(r[r.index("--dport") + 1]) for r in rules if "--dport" in r}
    assert opened == {15443, 15011, 15012, 15014, 2379, 2380, 15103, 15113}
    four = nodes.nodes_layout(SUBNET, "1", 4)
    fourth = {int(r[r.index("--dport") + 1]) for r in nodes.firewall_rules(four, four.nodes[3])
              if "--dport" in r}  # fmt: skip
    assert fourth == {15443, 15011, 15012, 15014, 15103}  # no etcd member on node 4


def test_network_makes_one_namespace_per_node_with_its_firewall(tmp_path: Path):
    layout = three()
    run = FakeRun({"iptables -w -S FORWARD": "-P FORWARD ACCEPT\n"})
    network = netns.Network(layout, "777", run, netns_dir=tmp_path)
    network.create()
    texts = run.texts()
    assert [t for t in texts if t.startswith("ip netns add")] == [
        f"ip netns add gup-777-node-{k}" for k in (1, 2, 3)
    ]
    assert "ip -n gup-777-node-2 addr add 10.213.9.12/24 dev eth0" in texts
    firewall = [t for t in texts if t.startswith("ip netns exec gup-777-node-1 iptables")]
    assert len(firewall) == len(nodes.firewall_rules(layout, layout.nodes[0]))
    assert firewall[-1] == "ip netns exec gup-777-node-1 iptables -w -A INPUT -i eth0 -j DROP"
    hosts = (tmp_path / "gup-777-node-1" / "hosts").read_text()
    assert "10.213.9.13\tnode-3\n" in hosts and "catalog" not in hosts
    run.calls.clear()
    assert network.destroy() == []
    assert run.texts() == [f"ip netns del gup-777-node-{k}" for k in (1, 2, 3)] + [
        "ip link del gupb777"
    ]
    # what a crashed run leaves is recognised as ours
    assert netns.stale_names(["gup-777-node-2", "gup777v1", "other"], lambda pid: False) == [
        "gup-777-node-2",
        "gup777v1",
    ]


def test_prepare_gives_every_replica_its_intermediate_and_the_tokens(tmp_path: Path):
    layout = three()
    state = prepare(tmp_path / "up", layout)
    root = CertificateAuthority.load(state.ca_dir)
    tokens = {t.service: t for t in TokenStore(state.ca_dir).list()}
    assert tokens["gateway"].namespace == "gossamer-system" and tokens["gateway"].uses == 3
    assert tokens["catalog"].uses == 2
    for node in layout.nodes:
        folder = state.node_dir(node.name)
        replica = CertificateAuthority.load(folder / "ca")
        assert replica.replica == node.name and replica.root_pin() == root.root_pin()
        assert not list((folder / "ca").glob("root-*.key"))  # no root key on a replica
        copied = {t.token_id for t in TokenStore(folder / "ca").list()}
        assert copied == {t.token_id for t in tokens.values()}
        control = load_mesh(folder / "mesh.yaml")[1].control  # the control plane's parser
        assert (control.xds_listen.host, control.xds_listen.port) == (node.address, 15012)
        assert control.store == nodes.etcd_store_url(layout)
        assert (control.ca_dir, control.data_dir) == (folder / "ca", folder / "data")
    assert state.mesh_file == state.node_dir("node-1") / "mesh.yaml"
    assert not (state.root / "mesh.yaml").exists()


def test_status_and_summary_name_the_nodes(tmp_path: Path):
    layout = three()
    state = StateDir(tmp_path, "node-1")
    data = report.status(layout, state, token="t", seconds=1.0, pids={}, bridge="gupb777")
    assert [n["name"] for n in data["nodes"]] == ["node-1", "node-2", "node-3"]
    assert data["nodes"][2]["instances"] == ["catalog-2", "inventory"]
    assert {i["name"]: i["node"] for i in data["instances"]}["catalog-1"] == "node-2"
    json.dumps(data)
    gateway = {"identity": "spiffe://gossamer.local/ns/gossamer-system/sa/gateway"}
    web = {"identity": "spiffe://gossamer.local/ns/default/sa/web"}
    snap = Snapshot(sidecars=[gateway, web, web], expected_sidecars=5, expected_gateways=3)
    assert "sidecars connected 2/5" in render(snap, now=0)[0]
    assert "gateways 1/3" in render(snap, now=0)[0]


def test_refusals_before_anything_starts(tmp_path: Path):
    def opts(**kw: object) -> UpOptions:
        return UpOptions(state_dir=tmp_path / "s", **kw)  # type: ignore[arg-type]

    def root() -> int:
        return 0

    def found(name: str) -> str:
        return f"/usr/bin/{name}"

    with pytest.raises(UsageError, match="--nodes needs root"):
        check_options(opts(nodes=3), euid=lambda: 1000, which=found)
    with pytest.raises(UsageError, match="--nodes needs etcd"):
        check_options(opts(nodes=3), euid=root, which=lambda name: None)
    with pytest.raises(UsageError, match="expected 1 to 4"):
        check_options(opts(nodes=9), euid=root, which=found)
    with pytest.raises(UsageError, match="choose one"):
        check_options(opts(nodes=2, isolate=True), euid=root, which=found)
    with pytest.raises(UsageError, match="--port-base"):
        check_options(opts(nodes=2, port_base=20000), euid=root, which=found)
    check_options(opts(nodes=2), euid=root, which=found)
    with pytest.raises(UsageError, match="expected 1 to 4"):
        run(opts(nodes=0), io.StringIO())
    assert not (tmp_path / "s").exists()
