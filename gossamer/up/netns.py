"""`gossamer up --isolate`: one network namespace per instance, on a Linux bridge.

    host: bridge gupb<pid> 10.213.N.1/24
      ├─ veth gup<pid>v0 ── netns gup-<pid>-control   eth0 10.213.N.2   control plane
      ├─ veth gup<pid>v1 ── netns gup-<pid>-web       eth0 10.213.N.10  app + sidecar
      └─ ...

Every name carries the pid of the `gossamer up` that made it, so a later run removes
what a crashed run left behind (a pid that no longer runs) and never touches a live
run's. Each namespace gets /etc/netns/NAME/hosts (which `ip netns exec` mounts over
/etc/hosts): service names resolve to instance addresses, as Compose's DNS would.
When the host passes bridged traffic through iptables (`br_netfilter`) with a FORWARD
policy that is not ACCEPT (Docker sets DROP), one ACCEPT rule for the bridge is added,
tagged with the same pid, and removed with the rest.

With `--nodes` the namespaces are the nodes' (gup-<pid>-node-K), each with the INPUT
rules of `nodes.firewall_rules` (they go with the namespace).

Commands go through an injectable `run` so the plan of commands is testable.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from gossamer.errors import GossamerError, UsageError
from gossamer.fsutil import locked
from gossamer.proxy.listeners.dns import system_upstreams
from gossamer.proxy.routing.mesh_names import VIP_NETWORK
from gossamer.up.layout import Layout, Subnet
from gossamer.up.nodes import firewall_rules
from gossamer.up.statedir import pid_alive

PREFIX = "gup"
NETNS_DIR = Path("/etc/netns")
LOCK = Path("/run/gossamer-up.lock")
SUBNET_BASE = "10.213"
_NETNS = re.compile(rf"^{PREFIX}-(\d+)-[a-z0-9-]+$")
_LINK = re.compile(rf"^{PREFIX}b?(\d+)(v\d+)?$")
_COMMENT = re.compile(r"gossamer-up-(\d+)")

Run = Callable[[list[str]], subprocess.CompletedProcess[str]]


def run_command(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise GossamerError(
            f"{cmd[0]} is not installed", hint="install iproute2 and iptables"
        ) from None


def require_root(flag: str = "--isolate", euid: Callable[[], int] = os.geteuid) -> None:
    if euid() != 0:
        raise UsageError(
            f"{flag} needs root (it creates network namespaces, veth pairs and a bridge)",
            hint=f"run it with sudo, or leave out {flag} to run everything on loopback",
        )
    for tool in ("ip", "iptables", "setpriv"):
        if shutil.which(tool) is None:
            raise UsageError(
                f"{flag} needs {tool}", hint="install iproute2, iptables and util-linux"
            )


def bridge_name(run_id: str) -> str:
    return f"{PREFIX}b{run_id}"


def veth_name(run_id: str, index: int) -> str:
    return f"{PREFIX}{run_id}v{index}"


class Network:
    """The bridge, namespaces, veths, hosts files and FORWARD rule of one run."""

    def __init__(
        self, layout: Layout, run_id: str, run: Run = run_command, netns_dir: Path = NETNS_DIR
    ) -> None:
        assert layout.subnet is not None
        self.layout = layout
        self.subnet: Subnet = layout.subnet
        self.run_id = run_id
        self.bridge = bridge_name(run_id)
        self._run = run
        self.netns_dir = netns_dir
        self.forward_rule: list[str] | None = None
        self.namespaces = [netns for netns, _ in self.members()]

    def sh(self, *cmd: str) -> None:
        result = self._run(list(cmd))
        if result.returncode != 0:
            raise GossamerError(
                f"`{' '.join(cmd)}` failed: {result.stderr.strip() or result.returncode}",
                hint="is another program using these names or this subnet?",
            )

    def members(self) -> list[tuple[str, str]]:
        """(netns, address) of every namespace, the control plane's first (or the
        nodes', in order)."""
        if self.layout.nodes:
            return [(node.netns, node.address) for node in self.layout.nodes]
        control = self.layout.control
        assert control.netns is not None
        found = [(control.netns, control.address)]
        found += [(i.netns, i.address) for i in self.layout.instances if i.netns]
        return found

    def hosts_file(self) -> str:
        if self.layout.nodes:  # the apps name services through their sidecar, not DNS
            names = [f"{node.address}\t{node.name}" for node in self.layout.nodes]
            return "\n".join(["127.0.0.1\tlocalhost", *names]) + "\n"
        lines = ["127.0.0.1\tlocalhost", f"{self.layout.control.address}\tgossamer-control"]
        lines += [f"{address}\t{name}" for name, address in self.layout.hosts().items()]
        return "\n".join(lines) + "\n"

    def captured_destinations(self) -> list[str]:
        """What the sidecar captures beyond the bridge: the VIP range and resolv.conf's
        IPv4 servers (outside the loopback range and this subnet)."""
        found = [str(VIP_NETWORK)]
        for host, _ in system_upstreams():
            with contextlib.suppress(ValueError):
                address = ipaddress.ip_address(host)
                if (
                    address.version == 4
                    and not address.is_loopback
                    and address
                    not in (ipaddress.ip_network(f"{self.subnet.bridge_address}/24", strict=False))
                ):
                    found.append(f"{address}/32")
        return list(dict.fromkeys(found))

    def create(self) -> None:
        prefix = f"{self.subnet.bridge_address}/24"
        self.sh("ip", "link", "add", self.bridge, "type", "bridge")
        self.sh("ip", "addr", "add", prefix, "dev", self.bridge)
        self.sh("ip", "link", "set", self.bridge, "up")
        hosts = self.hosts_file()
        captured = self.captured_destinations()  # resolv.conf read once, not per namespace
        for index, (netns, address) in enumerate(self.members()):
            veth = veth_name(self.run_id, index)
            self.sh("ip", "netns", "add", netns)
            self.sh(
                "ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns
            )
            self.sh("ip", "link", "set", veth, "master", self.bridge, "up")
            self.sh("ip", "-n", netns, "addr", "add", f"{address}/24", "dev", "eth0")
            self.sh("ip", "-n", netns, "link", "set", "eth0", "up")
            self.sh("ip", "-n", netns, "link", "set", "lo", "up")
            # the app's DNS queries to resolv.conf's servers and its connections to the
            # VIPs the sidecar's DNS answers are redirected in nat OUTPUT, which runs
            # after routing: without a route the kernel refuses them first
            for destination in captured:
                self.sh("ip", "-n", netns, "route", "add", destination, "dev", "eth0")
            folder = self.netns_dir / netns
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "hosts").write_text(hosts, encoding="utf-8")
        for node in self.layout.nodes:
            for rule in firewall_rules(self.layout, node):
                self.sh("ip", "netns", "exec", node.netns, "iptables", "-w", "-A", *rule)
        self._allow_forwarding()

    def _allow_forwarding(self) -> None:
        try:
            bridged = Path("/proc/sys/net/bridge/bridge-nf-call-iptables").read_text().strip()
        except OSError:
            return  # br_netfilter not loaded: bridged frames skip iptables
        if bridged != "1":
            return
        policy = self._run(["iptables", "-w", "-S", "FORWARD"]).stdout.splitlines()
        if policy and policy[0].strip() == "-P FORWARD ACCEPT":
            return
        rule = ["FORWARD", "-i", self.bridge, "-o", self.bridge, "-m", "comment"]
        rule += ["--comment", f"gossamer-up-{self.run_id}", "-j", "ACCEPT"]
        self.sh("iptables", "-w", "-I", *rule)
        self.forward_rule = rule

    def destroy(self) -> list[str]:
        """Remove everything `create` made (whatever part of it exists); returns errors."""
        errors: list[str] = []
        if self.forward_rule is not None:
            result = self._run(["iptables", "-w", "-D", *self.forward_rule])
            if result.returncode != 0:
                errors.append(result.stderr.strip())
            self.forward_rule = None
        for netns in self.namespaces:
            remove_netns(netns, self._run, errors, self.netns_dir)
        remove_link(self.bridge, self._run, errors)
        return errors


def remove_netns(netns: str, run: Run, errors: list[str], netns_dir: Path = NETNS_DIR) -> None:
    result = run(["ip", "netns", "del", netns])  # takes the veth pair with it
    if result.returncode != 0 and "No such file" not in result.stderr:
        errors.append(result.stderr.strip())
    shutil.rmtree(netns_dir / netns, ignore_errors=True)


def remove_link(name: str, run: Run, errors: list[str]) -> None:
    result = run(["ip", "link", "del", name])
    if result.returncode != 0 and "Cannot find device" not in result.stderr:
        errors.append(result.stderr.strip())


def ours(name: str) -> int | None:
    """The pid in the name of a namespace or link `gossamer up` made, else None."""
    match = _NETNS.match(name) or _LINK.match(name)
    return int(match.group(1)) if match else None


def stale_names(names: list[str], alive: Callable[[int], bool] = pid_alive) -> list[str]:
    """Names made by a `gossamer up` that no longer runs."""
    return [n for n in names if (pid := ours(n)) is not None and not alive(pid)]


def list_netns(run: Run) -> list[str]:
    out = run(["ip", "netns", "list"]).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def list_links(run: Run) -> list[str]:
    out = run(["ip", "-o", "link", "show"]).stdout
    names = []
    for line in out.splitlines():
        parts = line.split(":", 2)
        if len(parts) >= 2:
            names.append(parts[1].strip().split("@", 1)[0])
    return names


def cleanup_stale(
    run: Run = run_command,
    alive: Callable[[int], bool] = pid_alive,
    netns_dir: Path = NETNS_DIR,
) -> list[str]:
    """Remove what crashed runs left: namespaces, links, hosts files, FORWARD rules."""
    removed: list[str] = []
    errors: list[str] = []
    for netns in stale_names(list_netns(run), alive):
        remove_netns(netns, run, errors, netns_dir)
        removed.append(f"netns {netns}")
    if netns_dir.is_dir():
        for folder in netns_dir.iterdir():
            if folder.name in stale_names([folder.name], alive):
                shutil.rmtree(folder, ignore_errors=True)
    for link in stale_names(list_links(run), alive):
        remove_link(link, run, errors)
        removed.append(f"link {link}")
    for line in run(["iptables", "-w", "-S", "FORWARD"]).stdout.splitlines():
        match = _COMMENT.search(line)
        if match and line.startswith("-A ") and not alive(int(match.group(1))):
            spec = line.split()[1:]
            spec = [s.strip('"') for s in spec]
            run(["iptables", "-w", "-D", *spec])
            removed.append(f"iptables FORWARD rule of pid {match.group(1)}")
    return removed


def choose_subnet(run: Run = run_command) -> Subnet:
    """A 10.213.N.0/24 that no address or route of the host uses yet."""
    used = run(["ip", "-4", "-o", "addr", "show"]).stdout + run(["ip", "-4", "route"]).stdout
    start = os.getpid() % 254
    for step in range(254):
        n = (start + step) % 254 + 1
        prefix = f"{SUBNET_BASE}.{n}"
        if f"{prefix}." not in used:
            return Subnet(prefix)
    raise GossamerError(f"no free /24 left in {SUBNET_BASE}.0.0/16 for the namespaces' bridge")


def setup_lock() -> contextlib.AbstractContextManager[None]:
    """Serialises clean-up, subnet choice and creation between concurrent runs."""
    return locked(LOCK)
