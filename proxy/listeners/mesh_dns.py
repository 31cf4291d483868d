"""The sidecar's DNS as one piece: the VIP allocator, the names of the configuration in
use, and the DNS listener answering from them (docs/architecture.md, "Several nodes").

`Sidecar` (proxy/sidecar.py) holds one when started with `--dns-port`: `prepare` runs
with each configuration's two-phase apply (the names and the snapshot whose
destinations include every service's VIP:port), `commit` makes the names current when
the configuration is, `start`/`stop` bind and close the UDP and TCP ports, `status` is
`/config_dump`'s `dns`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from gossamer.proxy.config import NodeInfo, ProxyConfig
from gossamer.proxy.listeners.dns import DnsServer, system_upstreams
from gossamer.proxy.routing import mesh_names
from gossamer.proxy.upstream.cluster import Snapshot


class MeshDns:
    def __init__(self, node: NodeInfo, upstreams: tuple[tuple[str, int], ...] = ()) -> None:
        self.node = node
        self.vips = mesh_names.VipAllocator()
        self.names = mesh_names.EMPTY
        self.server = DnsServer(lambda: self.names, upstreams or system_upstreams())

    def prepare(
        self, config: ProxyConfig, snapshot: Snapshot
    ) -> tuple[Snapshot, mesh_names.MeshNames]:
        """The configuration's names, and `snapshot` with a connection to VIP:port
        going to the service's cluster (transparent mode; real addresses win)."""
        names = mesh_names.build(
            config.clusters,
            config.endpoints,
            own_node=self.node.node,
            own_namespace=self.node.namespace,
            trust_domain=config.node.trust_domain,
            allocator=self.vips,
        )
        destinations = {**names.destinations, **snapshot.destinations}
        return dataclasses.replace(snapshot, destinations=destinations), names

    def commit(self, names: mesh_names.MeshNames) -> None:
        self.names = names

    async def start(self, address: str, port: int) -> int:
        return await self.server.start(address, port)

    async def stop(self) -> None:
        await self.server.stop()

    def status(self) -> dict[str, Any]:
        names = self.names
        return {
            "upstreams": [f"{host}:{port}" for host, port in self.server.upstreams],
            "answers": dict(sorted(names.answers.items())),
            "local": sorted(names.local),
            "queries": self.server.stats.as_dict(),
        }
