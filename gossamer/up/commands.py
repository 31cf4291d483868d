"""The command line of every process `gossamer up` starts (pure).

Every process is the `gossamer` CLI run by the same Python (`python -m
gossamer.cli.main`), so the demo runs from a checkout's virtual environment as well as
from an installed package. In the isolated shape a command is wrapped to run in its
instance's network namespace (`ip netns exec`, which also bind-mounts the namespace's
hosts file from /etc/netns/NAME/) as an unprivileged user (`setpriv`), asking again
for the parent-death signal that a change of user clears. With `--nodes` a command runs
in its node's namespace; the node's etcd member, replica and gateway have commands of
their own here.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from gossamer import __version__
from gossamer.contract.ports import DNS_PORT
from gossamer.up import nodes
from gossamer.up.layout import NAMESPACE, PROXY_UID, SERVICE_PORT, Instance, Layout, Node
from gossamer.up.statedir import StateDir

ETCD_BINARY = "etcd"

APP_UID = 65534  # nobody: the demo apps need no privilege (isolated shape)


@dataclass(frozen=True)
class Settings:
    """Knobs of the demo that reach the processes' command lines."""

    rate: float = 5.0  # load generator requests per second
    fail_rate: float = 0.05  # share of inventory answers that are 503
    latency_ms: float = 2.0


def gossamer(*args: str) -> list[str]:
    return [sys.executable, "-m", "gossamer.cli.main", *args]


def in_netns(netns: str | None, argv: list[str], uid: int | None = None) -> list[str]:
    """Run `argv` in `netns` (as `uid`), or unchanged outside the isolated shape."""
    if netns is None:
        return argv
    wrapped = ["ip", "netns", "exec", netns]
    if uid is not None:
        wrapped += [
            "setpriv",
            "--pdeathsig",
            "TERM",
            f"--reuid={uid}",
            f"--regid={uid}",
            "--clear-groups",
            "--",
        ]
    return wrapped + argv


def control_plane(layout: Layout, state: StateDir, node: Node | None = None) -> list[str]:
    """The control plane, or with `node` that node's replica."""
    mesh_file = state.mesh_file if node is None else state.node_dir(node.name) / "mesh.yaml"
    argv = gossamer("control", "--config", str(mesh_file), "--reload-interval", "1")
    return in_netns(layout.control.netns if node is None else node.netns, argv)


def etcd(layout: Layout, node: Node, state: StateDir, binary: str = ETCD_BINARY) -> list[str]:
    """The node's etcd member, one of a cluster of nodes 1..3 (fast elections)."""
    client = f"http://{node.address}:{nodes.ETCD_CLIENT_PORT}"
    peer = f"http://{node.address}:{nodes.ETCD_PEER_PORT}"
    argv = [
        binary,
        f"--name={node.name}",
        f"--data-dir={state.node_dir(node.name) / 'etcd'}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster={nodes.etcd_initial_cluster(layout)}",
        "--initial-cluster-state=new",
        f"--initial-cluster-token=gossamer-up-{layout.subnet.prefix if layout.subnet else ''}",
        "--heartbeat-interval=100",
        "--election-timeout=1000",
        "--logger=zap",
        "--log-level=warn",
    ]
    return in_netns(node.netns, argv)


def gateway(layout: Layout, node: Node) -> list[str]:
    """The node's gateway; its join token goes in its environment (`gateway_env`)."""
    argv = gossamer(
        "gateway",
        "--node",
        node.name,
        "--zone",
        node.zone,
        "--listen",
        f"0.0.0.0:{nodes.GATEWAY_PORT}",
        "--advertise",
        f"{node.address}:{nodes.GATEWAY_PORT}",
        "--control",  # every replica, its own node's first, as for the sidecars
        nodes.control_list(layout, node.name),
        "--bootstrap",
        nodes.bootstrap_list(layout, node.name),
        "--admin-port",
        str(nodes.GATEWAY_ADMIN_PORT),
        "--metrics-port",
        str(nodes.GATEWAY_METRICS_PORT),
    )
    return in_netns(node.netns, argv, PROXY_UID)


def gateway_env(state: StateDir) -> dict[str, str]:
    from gossamer.contract.identity import GATEWAY_SERVICE

    return {"GOSSAMER_TOKEN": state.token(GATEWAY_SERVICE)}


def upstream_url(instance: Instance) -> str | None:
    """Apps name their upstream as in Compose; the sidecar resolves the name."""
    if instance.upstream is None:
        return None
    return f"http://{instance.upstream}:{SERVICE_PORT}"


def proxy_url(layout: Layout, instance: Instance) -> str | None:
    """Loopback and nodes shapes: the app's sidecar as its HTTP proxy (explicit mode)."""
    if layout.transparent:
        return None  # transparent: iptables sends the app's connections to its sidecar
    return f"http://127.0.0.1:{instance.sidecar.outbound}"


def app(layout: Layout, instance: Instance, settings: Settings) -> list[str]:
    assert instance.role is not None and instance.app_port is not None
    argv = gossamer(
        "demo",
        "app",
        "--role",
        instance.role,
        "--host",
        "0.0.0.0" if layout.transparent else "127.0.0.1" if layout.nodes else instance.address,
        "--port",
        str(instance.app_port),
        "--latency-ms",
        str(settings.latency_ms),
    )
    upstream = upstream_url(instance)
    if upstream is not None:
        argv += ["--upstream", upstream]
    proxy = proxy_url(layout, instance)
    if proxy is not None:
        argv += ["--proxy", proxy]
    if instance.role == "inventory" and settings.fail_rate > 0:
        argv += ["--fail-rate", str(settings.fail_rate)]
    return in_netns(instance.netns, argv, APP_UID)


def loadgen(layout: Layout, instance: Instance, settings: Settings) -> list[str]:
    argv = gossamer("demo", "loadgen", "--url", f"{upstream_url(instance)}/")
    argv += ["--rate", str(settings.rate)]
    proxy = proxy_url(layout, instance)
    if proxy is not None:
        argv += ["--proxy", proxy]
    return in_netns(instance.netns, argv, APP_UID)


def sidecar(layout: Layout, instance: Instance, state_dir: Path | None = None) -> list[str]:
    """The sidecar's command; its join token goes in its environment (`sidecar_env`).
    `state_dir`: where it keeps its certificate and configuration across restarts (the
    loopback shape: the session directory is the user's own; an isolated sidecar runs
    as another UID, which the session directory is closed to)."""
    ports = instance.sidecar
    listen = "0.0.0.0" if layout.isolated else instance.address
    if instance.node is not None:  # --nodes: every replica, its own node's first
        control = nodes.control_list(layout, instance.node)
        bootstrap = nodes.bootstrap_list(layout, instance.node)
    else:
        control = f"{layout.control.address}:{layout.control.xds}"
        bootstrap = f"{layout.control.address}:{layout.control.bootstrap}"
    argv = gossamer(
        "proxy",
        "--service",
        instance.service,
        "--namespace",
        NAMESPACE,
        "--node",
        instance.node or instance.name,
        "--instance-id",
        instance.name,
        "--advertise-address",
        instance.address,
        "--control",
        control,
        "--bootstrap",
        bootstrap,
        "--inbound-port",
        str(ports.inbound),
        "--outbound-port",
        str(ports.outbound),
        "--admin-port",
        str(ports.admin),
        "--metrics-port",
        str(ports.metrics),
        "--inbound-address",
        listen,
        "--metrics-address",
        listen,
        "--outbound-address",
        "127.0.0.1",
    )
    if instance.app_port is not None:
        # peers call the service port; the app may listen on another one (loopback)
        argv += ["--app-port", f"{SERVICE_PORT}:{instance.app_port}/http"]
    if state_dir is not None:
        argv += ["--state-dir", str(state_dir)]
    if instance.zone is not None:
        argv += ["--zone", instance.zone]
    if layout.transparent:  # the app's DNS comes here (iptables_install): mesh names
        argv += ["--dns-port", str(DNS_PORT)]
    return in_netns(instance.netns, argv, PROXY_UID if layout.isolated else None)


def sidecar_env(instance: Instance, state: StateDir) -> dict[str, str]:
    """$GOSSAMER_TOKEN: readable by the sidecar whatever user it runs as and wherever
    the state directory is (pytest's and /root's folders are closed to other users).
    $GOSSAMER_SERVICE_VERSION: the demo's apps are Gossamer's own code, so their traces'
    `service.version` is Gossamer's version."""
    return {
        "GOSSAMER_TOKEN": state.token(instance.service),
        "GOSSAMER_SERVICE_VERSION": __version__,
    }


def iptables_install(instance: Instance) -> list[str]:
    """Transparent interception in the instance's namespace (isolated shape)."""
    assert instance.netns is not None
    argv = gossamer(
        "proxy",
        "iptables",
        "install",
        "--proxy-uid",
        str(PROXY_UID),
        "--inbound-port",
        str(instance.sidecar.inbound),
        "--outbound-port",
        str(instance.sidecar.outbound),
        "--metrics-port",
        str(instance.sidecar.metrics),
        "--dns-port",
        str(DNS_PORT),
    )
    if instance.app_port is None:
        argv.append("--no-inbound")
    return in_netns(instance.netns, argv)
