"""`--isolate` networking as a plan of commands (a fake runner records them); the real
namespaces are exercised by tests/e2e/test_up.py."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from gossamer.errors import GossamerError
from gossamer.up import netns
from gossamer.up.layout import Subnet, isolated_layout


class FakeRun:
    def __init__(self, outputs: dict[str, str] | None = None, fail: str | None = None) -> None:
        self.calls: list[list[str]] = []
        self.outputs = outputs or {}
        self.fail = fail

    def __call__(self, cmd: list[str]) -> subprocess.CompletedProcess[str]:
        self.calls.append(cmd)
        text = " ".join(cmd)
        if self.fail and self.fail in text:
            return subprocess.CompletedProcess(cmd, 2, "", "RTNETLINK answers: File exists")
        return subprocess.CompletedProcess(cmd, 0, self.outputs.get(text, ""), "")

    def texts(self) -> list[str]:
        return [" ".join(c) for c in self.calls]


def test_create_builds_bridge_namespaces_veths_and_hosts_files(tmp_path: Path):
    layout = isolated_layout(Subnet("10.213.5"), "321")
    run = FakeRun({"iptables -w -S FORWARD": "-P FORWARD ACCEPT\n"})
    network = netns.Network(layout, "321", run, netns_dir=tmp_path)
    network.create()
    texts = run.texts()
    assert texts[:3] == [
        "ip link add gupb321 type bridge",
        "ip addr add 10.213.5.1/24 dev gupb321",
        "ip link set gupb321 up",
    ]
    assert "ip netns add gup-321-control" in texts
    assert "ip link add gup321v0 type veth peer name eth0 netns gup-321-control" in texts
    assert "ip -n gup-321-control addr add 10.213.5.2/24 dev eth0" in texts
    assert "ip -n gup-321-catalog-2 addr add 10.213.5.12/24 dev eth0" in texts
    assert "ip link set gup321v5 master gupb321 up" in texts  # loadgen: the 6th namespace
    assert all(len(n) <= 15 for n in ("gupb321", netns.veth_name("4194304", 9)))
    hosts = (tmp_path / "gup-321-web" / "hosts").read_text()
    assert "10.213.5.11\tcatalog\n" in hosts and "10.213.5.12\tcatalog-2\n" in hosts
    assert "10.213.5.2\tgossamer-control\n" in hosts and "127.0.0.1\tlocalhost" in hosts
    assert network.forward_rule is None  # ACCEPT policy (or no br_netfilter): nothing added

    run.calls.clear()
    assert network.destroy() == []
    texts = run.texts()
    assert "ip netns del gup-321-web" in texts and texts[-1] == "ip link del gupb321"
    assert not (tmp_path / "gup-321-web").exists()


def test_a_failing_step_names_the_command(tmp_path: Path):
    layout = isolated_layout(Subnet("10.213.5"), "321")
    network = netns.Network(layout, "321", FakeRun(fail="ip netns add gup-321-web"), tmp_path)
    with pytest.raises(GossamerError, match=r"ip netns add gup-321-web.*File exists"):
        network.create()


def test_forward_rule_added_under_a_drop_policy_and_removed(tmp_path: Path, monkeypatch):
    layout = isolated_layout(Subnet("10.213.5"), "321")
    run = FakeRun({"iptables -w -S FORWARD": "-P FORWARD DROP\n"})
    network = netns.Network(layout, "321", run, netns_dir=tmp_path)
    real_read = Path.read_text

    def read_text(self: Path, *args, **kwargs) -> str:
        if str(self) == "/proc/sys/net/bridge/bridge-nf-call-iptables":
            return "1\n"
        return real_read(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)
    network.create()
    rule = "FORWARD -i gupb321 -o gupb321 -m comment --comment gossamer-up-321 -j ACCEPT"
    assert f"iptables -w -I {rule}" in run.texts()
    network.destroy()
    assert f"iptables -w -D {rule}" in run.texts()


def test_stale_names_are_those_of_dead_runs_only():
    alive = {100}.__contains__
    names = ["gup-100-web", "gup-200-web", "gupb200", "gup200v3", "gupb100", "eth0", "g123a"]
    assert netns.stale_names(names, alive) == ["gup-200-web", "gupb200", "gup200v3"]
    assert netns.ours("gup-7-catalog-1") == 7 and netns.ours("docker0") is None


def test_cleanup_stale_removes_namespaces_links_files_and_rules(tmp_path: Path):
    (tmp_path / "gup-200-web").mkdir()
    (tmp_path / "gup-100-web").mkdir()
    run = FakeRun(
        {
            "ip netns list": "gup-200-web (id: 4)\ngup-100-web (id: 3)\nother\n",
            "ip -o link show": "1: lo: <LOOPBACK>\n7: gupb200: <BROADCAST>\n"
            "9: gup200v1@if2: <BROADCAST>\n10: gupb100: <BROADCAST>\n",
            "iptables -w -S FORWARD": "-P FORWARD DROP\n-A FORWARD -i gupb200 -o gupb200 -m "
            "comment --comment gossamer-up-200 -j ACCEPT\n",
        }
    )
    removed = netns.cleanup_stale(run, {100}.__contains__, netns_dir=tmp_path)
    assert removed == [
        "netns gup-200-web",
        "link gupb200",
        "link gup200v1",
        "iptables FORWARD rule of pid 200",
    ]
    assert not (tmp_path / "gup-200-web").exists() and (tmp_path / "gup-100-web").exists()
    assert (
        "iptables -w -D FORWARD -i gupb200 -o gupb200 -m comment --comment gossamer-up-200 "
        "-j ACCEPT" in run.texts()
    )


def test_choose_subnet_skips_prefixes_in_use(monkeypatch):
    monkeypatch.setattr(os, "getpid", lambda: 254 * 1000 + 6)  # starts at .7
    run = FakeRun({"ip -4 -o addr show": "3: gupb9 inet 10.213.7.1/24", "ip -4 route": ""})
    assert netns.choose_subnet(run) == Subnet("10.213.8")
