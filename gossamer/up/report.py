"""What `gossamer up` tells people and tools once the mesh is up (pure).

`banner` is the text for a person: what runs where, the dashboard URL (with the API
token in the fragment, which browsers do not send to servers), a request to paste,
where the logs are. `status` is the same as data, written to status.json for tools and
tests.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from gossamer.up import nodes
from gossamer.up.commands import Settings
from gossamer.up.layout import Instance, Layout, Node
from gossamer.up.probes import ENTRY_URL, curl_command
from gossamer.up.statedir import StateDir


def dashboard_url(layout: Layout, token: str) -> str:
    return f"{layout.control.api_url}/#token={token}"


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _instance_line(layout: Layout, instance: Instance, settings: Settings) -> str:
    ports = instance.sidecar
    where = f"{instance.address} netns {instance.netns}  " if instance.netns else ""
    if instance.node is not None:
        where = f"{instance.node}  "
    if instance.role is None:
        what = f"{settings.rate:g} req/s to {ENTRY_URL} through its sidecar"
    else:
        what = f"app :{instance.app_port}"
    sidecar = (
        f"sidecar in :{ports.inbound} out :{ports.outbound} admin :{ports.admin} "
        f"metrics :{ports.metrics}"
    )
    return f"  {instance.name:<14} {where}{what}  {sidecar}"


def _node_line(layout: Layout, node: Node) -> str:
    etcd = f"  etcd :{nodes.ETCD_CLIENT_PORT}" if node.etcd else ""
    placed = ", ".join(i.name for i in nodes.instances_on(layout, node)) or "no instances"
    return (
        f"  {node.name:<14} {node.address} {node.zone} netns {node.netns}  replica API + "
        f"dashboard :{node.control.api}  gateway :{nodes.GATEWAY_PORT}{etcd}  ({placed})"
    )


def node_status(layout: Layout, state: StateDir, node: Node) -> dict[str, Any]:
    return {
        "name": node.name,
        "zone": node.zone,
        "address": node.address,
        "netns": node.netns,
        "api_url": node.control.api_url,
        "xds": node.control.xds,
        "bootstrap": node.control.bootstrap,
        "admin_token_file": str(state.node_dir(node.name) / "data" / "admin-token"),
        "mesh_file": str(state.node_dir(node.name) / "mesh.yaml"),
        "gateway": nodes.GATEWAY_PORT,
        "gateway_admin": nodes.GATEWAY_ADMIN_PORT,
        "gateway_metrics": nodes.GATEWAY_METRICS_PORT,
        "etcd": f"{node.address}:{nodes.ETCD_CLIENT_PORT}" if node.etcd else None,
        "instances": [i.name for i in nodes.instances_on(layout, node)],
    }


def banner(
    layout: Layout,
    state: StateDir,
    settings: Settings,
    *,
    token: str,
    seconds: float,
    processes: int,
) -> list[str]:
    control = layout.control
    where = f" netns {control.netns}" if control.netns else ""
    if layout.nodes and layout.subnet is not None:
        shape = (
            f"{len(layout.nodes)} node{'s' if len(layout.nodes) > 1 else ''} on "
            f"{layout.subnet.cidr}, a gateway and a "
            "control-plane replica each, on etcd"
        )
    elif layout.subnet is not None:
        shape = (
            f"isolated: one network namespace per instance on {layout.subnet.cidr}, "
            "transparent interception"
        )
    else:
        shape = "loopback, apps use their sidecar as HTTP proxy"
    lines = [
        f"Gossamer demo mesh is up in {seconds:.1f} s: {processes} processes ({shape}).",
        "Every sidecar is ready and a request went loadgen -> web -> catalog -> inventory "
        "over mutual TLS.",
        "",
        f"  {'control plane':<14} {control.address}{where}  API + dashboard :{control.api}"
        f"  xDS (mTLS) :{control.xds}  bootstrap :{control.bootstrap}",
    ]
    if layout.nodes:
        lines = lines[:3] + [_node_line(layout, node) for node in layout.nodes]
    lines += [_instance_line(layout, i, settings) for i in layout.instances]
    lines += [
        "",
        f"  Dashboard  {dashboard_url(layout, token)}",
        f"  Try        {curl_command(layout)}",
        f"  Stats      gossamer stat --config {_shown(state.mesh_file)}",
        f"  Logs       {_shown(state.logs)}/ (one file per process)",
        "",
        "Ctrl-C stops everything.",
    ]
    return lines


def status(
    layout: Layout,
    state: StateDir,
    *,
    token: str,
    seconds: float,
    pids: dict[str, int],
    bridge: str | None,
) -> dict[str, Any]:
    control = layout.control
    return {
        "pid": os.getpid(),
        "ready": True,
        "startup_seconds": round(seconds, 3),
        "state_dir": str(state.root),
        "isolated": layout.isolated,
        "subnet": layout.subnet.cidr if layout.subnet else None,
        "bridge": bridge,
        "control": {
            "address": control.address,
            "xds": control.xds,
            "bootstrap": control.bootstrap,
            "api": control.api,
            "api_url": control.api_url,
            "netns": control.netns,
        },
        "dashboard": dashboard_url(layout, token),
        "curl": curl_command(layout),
        "entry_url": ENTRY_URL,
        "instances": [
            {
                "name": i.name,
                "service": i.service,
                "address": i.address,
                "app_port": i.app_port,
                "inbound": i.sidecar.inbound,
                "outbound": i.sidecar.outbound,
                "admin": i.sidecar.admin,
                "metrics": i.sidecar.metrics,
                "netns": i.netns,
                "node": i.node,
                "zone": i.zone,
            }
            for i in layout.instances
        ],
        "nodes": [node_status(layout, state, node) for node in layout.nodes],
        "store": nodes.etcd_store_url(layout) if layout.nodes else "embedded",
        "processes": pids,
        "logs": str(state.logs),
    }
