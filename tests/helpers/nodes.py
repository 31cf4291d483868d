"""Simulated nodes for multi-node tests: one network namespace per node on a bridge.

    with SimNodes(3) as nodes:          # needs root
        nodes.address(1)                # node 1's address, e.g. "10.213.7.11"
        nodes.exec(1, ["curl", ...])    # a command prefix running in node 1
        nodes.host                      # the bridge's (root namespace's) address
        nodes.link(3, up=False)         # node 3 gone from the network (its link down)

Every node is one namespace with one address (`<prefix>.1N`), so every process of a node
(apps, sidecars, its gateway) shares it, as containers of one Docker host share the
host's address for published ports. The control plane runs in the root namespace on the
bridge address, reachable by every node. Node-internal ports are not reachable from other
nodes: each node's INPUT chain accepts from its `eth0` only established connections and
new ones to the ports in `open_ports` (the gateway's), and drops the rest. Everything is
removed on exit (each veth, which takes its peer, then the namespaces).
"""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from gossamer.up.netns import choose_subnet

PREFIX = "gsn"
_RUNS = itertools.count(1)  # SimNodes made by this process: each its own names


def sh(*cmd: str) -> str:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {result.stderr.strip()}")
    return result.stdout


def allowing_forward_rule(bridge: str, comment: str) -> list[str] | None:
    """Bridged frames go through iptables' FORWARD chain when br_netfilter is loaded
    (Docker's DROP policy would drop them): accept the bridge's own traffic, as `gossamer
    up --isolate` does; the rule to delete later, or None when none was needed."""
    try:
        bridged = Path("/proc/sys/net/bridge/bridge-nf-call-iptables").read_text().strip()
    except OSError:
        return None
    if bridged != "1":
        return None
    rule = ["FORWARD", "-i", bridge, "-o", bridge, "-m", "comment", "--comment", comment]
    sh("iptables", "-w", "-I", *rule, "-j", "ACCEPT")
    return [*rule, "-j", "ACCEPT"]


class SimNodes:
    def __init__(self, count: int, open_ports: Sequence[int] = ()) -> None:
        assert os.geteuid() == 0, "multi-node tests create network namespaces: run as root"
        self.count = count
        self.open_ports = tuple(open_ports)
        # unique per instance: a namespace deleted by the previous test can outlive its
        # `ip netns del` for a moment (the kernel frees it asynchronously), with its veth
        self.tag = f"{os.getpid() % 100000}x{next(_RUNS) % 100}"
        self.bridge = f"{PREFIX}b{self.tag}"
        self.subnet = choose_subnet()
        self.forward: list[str] | None = None
        self.made: list[str] = []

    @property
    def host(self) -> str:
        return self.subnet.bridge_address

    def address(self, node: int) -> str:
        return self.subnet.host(10 + node)

    def netns(self, node: int) -> str:
        return f"{PREFIX}{self.tag}n{node}"

    def exec(self, node: int, args: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.netns(node), *args]

    def __enter__(self) -> SimNodes:
        try:
            self._create()
        except BaseException:
            self._destroy()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._destroy()

    def _create(self) -> None:
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        self.made.append(self.bridge)
        sh("ip", "addr", "add", f"{self.host}/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        self.forward = allowing_forward_rule(self.bridge, f"gossamer-test-{self.tag}")
        for node in range(1, self.count + 1):
            ns, veth = self.netns(node), self.veth(node)
            sh("ip", "netns", "add", ns)
            self.made.append(f"netns:{ns}")
            sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            self.made.append(veth)  # deleted first: both ends go at once
            sh("ip", "link", "set", veth, "master", self.bridge, "up")
            sh("ip", "-n", ns, "addr", "add", f"{self.address(node)}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            accept = [["-i", "eth0", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED"]]
            accept += [["-i", "eth0", "-p", "tcp", "--dport", str(p)] for p in self.open_ports]
            rules = [[*rule, "-j", "ACCEPT"] for rule in accept] + [["-i", "eth0", "-j", "DROP"]]
            for rule in rules:
                sh("ip", "netns", "exec", ns, "iptables", "-w", "-A", "INPUT", *rule)

    def veth(self, node: int) -> str:
        """The root-namespace end of node's link to the bridge."""
        return f"{PREFIX}{self.tag}v{node}"

    def link(self, node: int, *, up: bool) -> None:
        """Take node's only link down (the whole node vanishes from the network, as a
        host that lost power: no RST, no FIN; its processes keep running) or up."""
        sh("ip", "link", "set", self.veth(node), "up" if up else "down")

    def _destroy(self) -> None:
        if self.forward is not None:
            subprocess.run(
                ["iptables", "-w", "-D", *self.forward], capture_output=True, check=False
            )
            self.forward = None
        for item in reversed(self.made):
            if item.startswith("netns:"):
                subprocess.run(["ip", "netns", "del", item[6:]], capture_output=True, check=False)
            else:
                subprocess.run(["ip", "link", "del", item], capture_output=True, check=False)
        self.made.clear()
