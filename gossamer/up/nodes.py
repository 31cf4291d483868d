"""`gossamer up --nodes N`: the demo mesh over N simulated nodes (pure).

Each node is one network namespace with one address on the run's bridge
(`<prefix>.1N`), shared by every process of the node, as the containers of one Docker
host share its address for published ports:

    node-K  10.213.X.(10+K)  zone-a (nodes 1, 2) or zone-b (nodes 3, 4)
      control-plane replica  :15011 bootstrap  :15012 xDS  :15014 API   (its own intermediate)
      gateway                :15443 (other nodes' sidecars, by SNI)  admin 127.0.0.1:15021
      etcd member            :2379 client  :2380 peer                  (nodes 1..3 only)
      instances              app 127.0.0.1:8080+S, sidecar :15100+10S+{0 in,1 out,2 admin,3 metrics}

where S is the instance's slot on its node. Instances are spread so that the chain
crosses nodes: the load generator and web on node 1, then catalog-1, catalog-2 and
inventory over the following nodes (`placement`). Sidecars run in explicit mode (the
apps use their sidecar as an HTTP proxy): several instances share a namespace, so one
iptables redirection could not serve them all.

A node accepts from other nodes (its INPUT chain, `firewall_rules`) only its gateway's
15443, its replica's three ports, its etcd member's two and its sidecars' metrics ports
(`GET /metrics` only: any replica scrapes every sidecar for `stat` and the dashboard);
apps, sidecars' inbound, outbound and admin ports stay node-internal, so cross-node
traffic goes through the gateways. etcd has no TLS nor authentication in this demo, so
each node's OUTPUT chain lets only root (replicas, etcd members) connect to 2379/2380:
apps (uid 65534) and sidecars (uid 1337) cannot reach any member, on their node or not.
"""

from __future__ import annotations

import math

from gossamer.contract import ports
from gossamer.errors import UsageError
from gossamer.up.layout import (
    SERVICE_PORT,
    TOPOLOGY,
    ControlPlaneAddress,
    Instance,
    Layout,
    Node,
    SidecarPorts,
    Subnet,
    netns_name,
)

MAX_NODES = 4  # one per demo app instance: web, catalog-1, catalog-2, inventory
MAX_ETCD_MEMBERS = 3
ETCD_CLIENT_PORT, ETCD_PEER_PORT = 2379, 2380
GATEWAY_PORT = 15443  # gossamer gateway's --listen port (issue 18)
GATEWAY_ADMIN_PORT = 15021  # 127.0.0.1 in the node's namespace
GATEWAY_METRICS_PORT = 15020
SLOT_BASE = 15100  # sidecar ports of slot S: SLOT_BASE + 10 * S + 0..3
CONTROL_PORTS = (ports.BOOTSTRAP_PORT, ports.XDS_PORT, ports.API_PORT)
APPS_IN_ORDER = ("web", "catalog-1", "catalog-2", "inventory")


def check_count(count: int) -> int:
    if not 1 <= count <= MAX_NODES:
        raise UsageError(
            f"--nodes {count}: expected 1 to {MAX_NODES}",
            hint=f"the demo has {MAX_NODES} app instances to spread; more nodes would be empty",
        )
    return count


def zone_of(index: int) -> str:
    """Two nodes per zone: node-1 and node-2 in zone-a, node-3 and node-4 in zone-b."""
    return f"zone-{'ab'[(index - 1) // 2]}"


def placement(count: int) -> dict[str, int]:
    """Instance name -> node index: loadgen and web on node 1, the rest spread evenly
    (3 nodes: web | catalog-1 | catalog-2, inventory)."""
    placed = {"loadgen": 1}
    for i, name in enumerate(APPS_IN_ORDER):
        placed[name] = 1 + math.ceil(i * (count - 1) / (len(APPS_IN_ORDER) - 1))
    return placed


def slot_ports(slot: int) -> tuple[int, SidecarPorts]:
    """(app port, sidecar ports) of the instance in `slot` on its node."""
    base = SLOT_BASE + 10 * slot
    return SERVICE_PORT + slot, SidecarPorts(base, base + 1, base + 2, base + 3)


def nodes_layout(subnet: Subnet, run_id: str, count: int) -> Layout:
    check_count(count)
    nodes = []
    for index in range(1, count + 1):
        address = subnet.host(10 + index)
        netns = netns_name(run_id, f"node-{index}")
        control = ControlPlaneAddress(
            address, ports.XDS_PORT, ports.BOOTSTRAP_PORT, ports.API_PORT, netns=netns
        )
        nodes.append(Node(index, address, netns, zone_of(index), control,
                          etcd=index <= MAX_ETCD_MEMBERS))  # fmt: skip
    placed = placement(count)
    slots = dict.fromkeys(range(1, count + 1), 0)
    instances = []
    for name, service, role in TOPOLOGY:
        node = nodes[placed[name] - 1]
        app_port, sidecar = slot_ports(slots[node.index])
        slots[node.index] += 1
        instances.append(
            Instance(
                name,
                service,
                role,
                node.address,
                app_port if role is not None else None,
                sidecar,
                netns=node.netns,
                node=node.name,
                zone=node.zone,
            )
        )
    return Layout(nodes[0].control, tuple(instances), subnet, tuple(nodes))


def instances_on(layout: Layout, node: Node) -> tuple[Instance, ...]:
    return tuple(i for i in layout.instances if i.node == node.name)


def replicas_for(layout: Layout, node_name: str) -> list[ControlPlaneAddress]:
    """Every replica, the node's own first (a sidecar's --control and --bootstrap)."""
    own = layout.node(node_name)
    return [own.control] + [n.control for n in layout.nodes if n is not own]


def control_list(layout: Layout, node_name: str) -> str:
    return ",".join(f"{c.address}:{c.xds}" for c in replicas_for(layout, node_name))


def bootstrap_list(layout: Layout, node_name: str) -> str:
    return ",".join(f"{c.address}:{c.bootstrap}" for c in replicas_for(layout, node_name))


def etcd_members(layout: Layout) -> tuple[Node, ...]:
    return tuple(n for n in layout.nodes if n.etcd)


def etcd_store_url(layout: Layout) -> str:
    """Every replica's `control.store`: the etcd members' client addresses."""
    hosts = ",".join(f"{n.address}:{ETCD_CLIENT_PORT}" for n in etcd_members(layout))
    return f"etcd://{hosts}/gossamer"


def etcd_initial_cluster(layout: Layout) -> str:
    return ",".join(f"{n.name}=http://{n.address}:{ETCD_PEER_PORT}" for n in etcd_members(layout))


def open_ports(layout: Layout, node: Node) -> list[int]:
    """The ports of `node` other nodes may connect to."""
    found = [GATEWAY_PORT, *CONTROL_PORTS]
    if node.etcd:
        found += [ETCD_CLIENT_PORT, ETCD_PEER_PORT]
    found += [i.sidecar.metrics for i in instances_on(layout, node)]
    return found


def firewall_rules(layout: Layout, node: Node) -> list[list[str]]:
    """iptables rules (for `iptables -w -A`) of the node: its INPUT chain accepts from
    `eth0` replies and the open ports only; its OUTPUT chain lets only root (the
    replicas, the etcd members) reach etcd, which has no authentication here: an app or
    a sidecar that could write there could add a root to the mesh's trust bundle."""
    etcd_ports = f"{ETCD_CLIENT_PORT},{ETCD_PEER_PORT}"
    # only connection attempts (SYN): a closed socket's last packets have no owner, and
    # rejecting those would leave its peer's side, and the namespace, waiting for minutes
    rules = [["OUTPUT", "-p", "tcp", "--syn", "-m", "multiport", "--dports", etcd_ports,
              "-m", "owner", "!", "--uid-owner", "0", "-j", "REJECT"],
             ["INPUT", "-i", "eth0", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED",
              "-j", "ACCEPT"]]  # fmt: skip
    rules += [
        ["INPUT", "-i", "eth0", "-p", "tcp", "--dport", str(port), "-j", "ACCEPT"]
        for port in open_ports(layout, node)
    ]
    rules.append(["INPUT", "-i", "eth0", "-j", "DROP"])
    return rules
