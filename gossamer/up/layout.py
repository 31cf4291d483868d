"""Who runs where in the demo mesh, on which addresses and ports (pure, but for the
port source).

The demo: `loadgen` calls `web`, which calls `catalog` (two replicas), which calls
`inventory`; each instance has its sidecar; the load generator has one too, so its
requests enter the mesh with an identity of their own (`loadgen`, a client-only
service: no app port). The control plane serves them all.

Three shapes:
- loopback (default): everything on 127.0.0.1; every app and sidecar listener gets its
  own port (free ports the kernel picks, or consecutive ones from `--port-base`). The
  apps call their upstream through their sidecar as an HTTP proxy (explicit mode).
- isolated (`--isolate`): each instance in its own network namespace with its own
  address on a bridge, the ports Compose uses (app 8080, sidecar 15006/15001/15000 and
  metrics 15090, control plane 15011/15012/15014), and transparent interception: apps call
  `http://catalog:8080` as in Compose, resolved through a per-namespace hosts file.
- nodes (`--nodes N`, gossamer/up/nodes.py): one namespace per simulated node, shared by
  every process of the node; instances spread over the nodes, each with its own ports
  (`Node.slot_ports`), apps using their sidecar as HTTP proxy as on loopback.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Protocol

from gossamer.contract import ports
from gossamer.errors import UsageError

SERVICE_PORT = 8080  # every demo service's port in the mesh (mesh.yaml, URLs)
PROXY_UID = 1337  # the sidecar's UID in isolated mode (iptables exempts its traffic)
INBOUND, OUTBOUND, ADMIN = ports.INBOUND_PORT, ports.OUTBOUND_PORT, ports.ADMIN_PORT
METRICS = ports.METRICS_PORT
XDS, BOOTSTRAP, API = ports.XDS_PORT, ports.BOOTSTRAP_PORT, ports.API_PORT
NAMESPACE = "default"
TRUST_DOMAIN = "gossamer.local"

# (instance name, mesh service, demo role or None for the load generator)
TOPOLOGY: tuple[tuple[str, str, str | None], ...] = (
    ("web", "web", "web"),
    ("catalog-1", "catalog", "catalog"),
    ("catalog-2", "catalog", "catalog"),
    ("inventory", "inventory", "inventory"),
    ("loadgen", "loadgen", None),
)
UPSTREAM = {"loadgen": "web", "web": "catalog", "catalog": "inventory"}
SERVICES = ("web", "catalog", "inventory", "loadgen")


class PortSource(Protocol):
    def take(self, host: str) -> int: ...


class FreePorts:
    """Ports the kernel picks; each stays bound until `release()` so none repeats."""

    def __init__(self) -> None:
        self._held: list[socket.socket] = []

    def take(self, host: str) -> int:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((host, 0))
        self._held.append(sock)
        return int(sock.getsockname()[1])

    def release(self) -> None:
        for sock in self._held:
            sock.close()
        self._held.clear()


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


class BasePorts:
    """Consecutive ports from `base`; a port in use is an error naming it."""

    def __init__(self, base: int) -> None:
        if not 1024 <= base <= 65535 - 64:
            raise UsageError(f"--port-base {base}: expected 1024-65471")
        self.next = base

    def take(self, host: str) -> int:
        port = self.next
        self.next += 1
        if not port_free(host, port):
            raise UsageError(
                f"port {port} on {host} is in use",
                hint="choose another --port-base, or leave it out to use free ports",
            )
        return port


@dataclass(frozen=True)
class SidecarPorts:
    inbound: int
    outbound: int
    admin: int  # on 127.0.0.1 in the instance's namespace
    metrics: int  # GET /metrics only, on the instance's address: the control plane scrapes it


@dataclass(frozen=True)
class Instance:
    name: str  # unique: web, catalog-1, ...
    service: str  # its mesh service
    role: str | None  # demo role; None: the load generator
    address: str  # the instance's address (127.0.0.1, or its namespace's)
    app_port: int | None  # where its app listens (None: client only)
    sidecar: SidecarPorts
    netns: str | None = None
    node: str | None = None  # its node's name (`--nodes`), its sidecar's --node
    zone: str | None = None  # its node's zone, its sidecar's --zone

    @property
    def upstream(self) -> str | None:
        return UPSTREAM.get(self.service)


@dataclass(frozen=True)
class ControlPlaneAddress:
    address: str
    xds: int
    bootstrap: int
    api: int
    netns: str | None = None

    @property
    def api_url(self) -> str:
        return f"http://{self.address}:{self.api}"


@dataclass(frozen=True)
class Subnet:
    """An IPv4 /24 for the isolated shape: .1 the bridge (host side), .2 the control
    plane, .10 onwards the instances."""

    prefix: str  # e.g. "10.213.7"

    def host(self, n: int) -> str:
        return f"{self.prefix}.{n}"

    @property
    def bridge_address(self) -> str:
        return self.host(1)

    @property
    def cidr(self) -> str:
        return f"{self.prefix}.0/24"


@dataclass(frozen=True)
class Node:
    """One simulated node (`--nodes`): a namespace with one address, running a
    control-plane replica, a gateway, maybe an etcd member, and some instances."""

    index: int  # 1..N
    address: str
    netns: str
    zone: str
    control: ControlPlaneAddress  # this node's replica
    etcd: bool  # runs an etcd member (nodes 1..3)

    @property
    def name(self) -> str:
        return f"node-{self.index}"


@dataclass(frozen=True)
class Layout:
    control: ControlPlaneAddress  # with --nodes: node 1's replica (the summary's source)
    instances: tuple[Instance, ...]
    subnet: Subnet | None = None  # set in the isolated and the nodes shapes
    nodes: tuple[Node, ...] = ()  # set in the nodes shape

    @property
    def isolated(self) -> bool:
        """Processes in network namespaces (`--isolate` or `--nodes`)."""
        return self.subnet is not None

    @property
    def transparent(self) -> bool:
        """One namespace per instance, with iptables interception (`--isolate`)."""
        return self.isolated and not self.nodes

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def get(self, name: str) -> Instance:
        for instance in self.instances:
            if instance.name == name:
                return instance
        raise KeyError(name)

    @property
    def apps(self) -> tuple[Instance, ...]:
        return tuple(i for i in self.instances if i.role is not None)

    @property
    def entry(self) -> Instance:
        """The instance whose sidecar requests enter the mesh through (the loadgen)."""
        return self.get("loadgen")

    def of_service(self, service: str) -> tuple[Instance, ...]:
        return tuple(i for i in self.instances if i.service == service)

    def hosts(self) -> dict[str, str]:
        """Isolated shape: name -> address, as Compose's DNS would answer (a service
        with replicas resolves to its first; its sidecar balances over all of them)."""
        names: dict[str, str] = {}
        for instance in self.instances:
            names.setdefault(instance.service, instance.address)
            names[instance.name] = instance.address
        return names


def netns_name(run_id: str, instance: str) -> str:
    return f"gup-{run_id}-{instance}"


def loopback_layout(ports: PortSource, host: str = "127.0.0.1") -> Layout:
    control = ControlPlaneAddress(host, ports.take(host), ports.take(host), ports.take(host))
    instances = []
    for name, service, role in TOPOLOGY:
        app_port = ports.take(host) if role is not None else None
        sidecar = SidecarPorts(*(ports.take(host) for _ in range(4)))
        instances.append(Instance(name, service, role, host, app_port, sidecar))
    return Layout(control, tuple(instances))


def isolated_layout(subnet: Subnet, run_id: str) -> Layout:
    control = ControlPlaneAddress(
        subnet.host(2), XDS, BOOTSTRAP, API, netns=netns_name(run_id, "control")
    )
    instances = []
    for index, (name, service, role) in enumerate(TOPOLOGY):
        instances.append(
            Instance(
                name,
                service,
                role,
                subnet.host(10 + index),
                SERVICE_PORT if role is not None else None,
                SidecarPorts(INBOUND, OUTBOUND, ADMIN, METRICS),
                netns=netns_name(run_id, name),
            )
        )
    return Layout(control, tuple(instances), subnet)
