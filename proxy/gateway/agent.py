"""The gateway's session with the control plane: identity, registration, configuration.

    agent = GatewayAgent(options, on_config)
    await agent.start()   # bootstrap (retrying while the control plane is unreachable),
                          # then ADS, registration and renewal in the background
    await agent.stop()    # deregistered, streams closed

The gateway is a workload of the mesh like a sidecar (docs/architecture.md, "Several
nodes"), with the reserved identity `spiffe://<td>/ns/gossamer-system/sa/gateway`: its
join token must be made for service `gateway` in namespace `gossamer-system`, which
only an admin (or the CA directory's owner) can do. The pieces are the sidecar's:

- bootstrap with the join token (proxy/agent/bootstrap.py `bootstrap_in_turn`: the
  `--bootstrap` addresses in turn), then the mutual-TLS channel to the current
  control-plane replica (proxy/agent/channels.py, replicas.py): `--control a,b` lists
  replicas in preference order, this node's first; ADS, registration and renewal move
  to the next one when theirs fails and back to the first when a probe (every
  `--control-probe-interval` seconds) finds it answering, exactly as a sidecar's;
- the registration stream (proxy/agent/registration.py) registers an instance of the
  gateway service whose address and port are `--advertise` and whose `node` is
  `--node`: the control plane then serves other nodes' sidecars this node's instances
  at that address (control/translate/endpoints.py). The advertised address must be the
  one the control plane sees the gateway connect from, or one its join token allows
  (`gossamer token create --allow-address`);
- the sidecar's ADS client (proxy/xds/client.py), with `GOSSAMER_NODE` in its node
  metadata, receives the `gateway:<node>` view; each applied configuration becomes a
  `RouteTable` (table.py) through `on_config`;
- renewal at 50-80% of the leaf's life over the mTLS channel, which is then replaced.

The gateway never uses its certificate on the data path (it does not terminate TLS):
the certificate only authenticates it to the control plane.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

from gossamer.certs.rotation import renewal_time
from gossamer.certs.spiffe import SpiffeId
from gossamer.contract import mesh_pb2
from gossamer.contract.identity import CONTROL_NAMESPACE, GATEWAY_SERVICE
from gossamer.errors import GossamerError, UpstreamConnectError
from gossamer.logs import event
from gossamer.proxy.agent.bootstrap import (
    WorkloadCredentials,
    bootstrap,
    bootstrap_in_turn,
    mtls_context,
    renew,
)
from gossamer.proxy.agent.channels import ControlChannels
from gossamer.proxy.agent.registration import Registration
from gossamer.proxy.agent.replicas import DEFAULT_PROBE_INTERVAL, Address, ReplicaSet
from gossamer.proxy.config import NodeInfo, ProxyConfig
from gossamer.proxy.telemetry.metrics import SidecarMetrics
from gossamer.proxy.xds.client import XdsClient

log = logging.getLogger("gossamer.proxy.gateway.agent")


@dataclass(frozen=True)
class GatewayAgentOptions:
    node: str
    zone: str
    advertise: Address
    control: tuple[Address, ...]  # in preference order: this node's replica first
    bootstrap: tuple[Address, ...]
    token: str
    instance_id: str
    cert_ttl: int = 0
    max_backoff: float = 5.0
    probe_interval: float = DEFAULT_PROBE_INTERVAL  # of the preferred replica, when away


class GatewayAgent:
    def __init__(
        self,
        options: GatewayAgentOptions,
        on_config: Callable[[ProxyConfig], None],
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.options = options
        self.on_config = on_config
        self.rng = rng or random.Random()
        self.credentials: WorkloadCredentials | None = None
        self.channels: ControlChannels | None = None
        self.xds: XdsClient | None = None
        self.registration: Registration | None = None
        self.metrics = SidecarMetrics()  # the xDS client's ACK/NACK counters
        self._tasks: list[asyncio.Task[None]] = []

    async def _bootstrap(self) -> WorkloadCredentials:
        opts = self.options

        async def certify(host: str, port: int) -> WorkloadCredentials:
            return await bootstrap(
                host, port, opts.token, GATEWAY_SERVICE, CONTROL_NAMESPACE,
                ttl_seconds=opts.cert_ttl, instance_id=opts.instance_id,
            )  # fmt: skip

        return await bootstrap_in_turn(opts.bootstrap, certify, self.rng, opts.max_backoff)

    def instance(self) -> mesh_pb2.Instance:
        opts = self.options
        return mesh_pb2.Instance(
            instance_id=opts.instance_id,
            address=opts.advertise[0],
            port=opts.advertise[1],
            zone=opts.zone,
            node=opts.node,
            health="healthy",
            service=GATEWAY_SERVICE,
            namespace=CONTROL_NAMESPACE,
        )

    async def start(self) -> None:
        creds = self.credentials = await self._bootstrap()
        opts = self.options
        trust_domain = SpiffeId.parse(creds.spiffe_id).trust_domain
        replicas = ReplicaSet(opts.control, probe_interval=opts.probe_interval, rng=self.rng)
        self.channels = ControlChannels(replicas, mtls_context(creds))
        node = NodeInfo(GATEWAY_SERVICE, CONTROL_NAMESPACE, opts.zone, opts.node, trust_domain)
        self.xds = XdsClient(
            node,
            opts.instance_id,
            channels=self.channels,
            apply=self.on_config,
            on_bundle=lambda _trust: None,  # no TLS on the data path
            metrics=self.metrics,
            rng=self.rng,
            max_backoff=opts.max_backoff,
        )
        self.registration = Registration(self.channels, self.instance(), rng=self.rng)
        self.channels.on_move += [self.xds.restart, self.registration.move]
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self.xds.run(), name="xds"),
            loop.create_task(self.registration.run(), name="registration"),
            loop.create_task(self._renewals(), name="renewal"),
        ]
        if replicas.several:
            self._tasks.append(loop.create_task(self.channels.run_probes(), name="probes"))
        event(log, logging.INFO, "gateway certified", spiffe_id=creds.spiffe_id,
              not_after=creds.not_after.isoformat())  # fmt: skip

    async def _renewals(self) -> None:
        received = dt.datetime.now(dt.UTC)
        while True:
            creds, channels = self.credentials, self.channels
            assert creds is not None and channels is not None and self.xds is not None
            at = renewal_time(max(creds.not_before, received), creds.not_after, self.rng)
            await asyncio.sleep(max(0.0, (at - dt.datetime.now(dt.UTC)).total_seconds()))
            attempt = 0
            while True:
                channel = channels.acquire()
                try:
                    new = await renew(channel, ttl_seconds=self.options.cert_ttl)
                    break
                except GossamerError as exc:
                    attempt += 1
                    if isinstance(exc, UpstreamConnectError):
                        channels.failed(channel, "UNAVAILABLE")  # may move to another replica
                    delay = channels.retry_delay(attempt, self.rng, self.options.max_backoff)
                    event(log, logging.WARNING, "certificate renewal failed; retrying",
                          error=exc.message, retry_in=round(delay, 2))  # fmt: skip
                finally:
                    await channels.release(channel)
                await asyncio.sleep(delay)
            self.credentials, received = new, dt.datetime.now(dt.UTC)
            await channels.replace(mtls_context(new))
            self.xds.restart()

    def status(self) -> dict[str, object]:
        xds, registration, creds = self.xds, self.registration, self.credentials
        return {
            "spiffe_id": creds.spiffe_id if creds else None,
            "not_after": creds.not_after.isoformat() if creds else None,
            "xds_connected": bool(xds and xds.connected),
            "xds_error": xds.last_error if xds else None,
            "registered": bool(registration and registration.registered),
            "registration_error": registration.last_error if registration else None,
            "control_plane": {
                **(self.channels.status() if self.channels else {}),
                "registered_at": registration.target if registration else "",
            },
        }

    async def stop(self) -> None:
        if self.registration is not None:
            with contextlib.suppress(Exception):
                await self.registration.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.channels is not None:
            await self.channels.close()
