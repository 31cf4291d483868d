"""A sidecar run by the control plane: certificate, configuration, registration, renewal.

    agent = Agent(sidecar, AgentOptions(...))
    await agent.start()   # bootstrap (retrying while the control plane is unreachable),
                          # then ADS, registration and the renewal timer in the background
    await agent.stop()    # draining, data path drained, deregistered, streams closed

Start-up (docs/architecture.md, "Identity"): the sidecar is already listening (its admin
port says what is missing); a P-256 key is made in memory and
certified with the join token on the bootstrap port; the certificate goes into the data
path; one mutual-TLS channel to `--control` then carries the ADS stream (xds/client.py)
and the registration stream (registration.py), whose health follows the app's readiness
probe. An unreachable control plane is retried with back-off (and logged); a refused
token or a CA pin that does not match ends start-up with the reason.

Renewal: at `renewal_time()` (50-80% of the leaf's life) a new key is certified over the
mTLS channel (retried with back-off on failure), swapped into the data path (open
connections keep the old one), and the channel to the control plane is replaced: the
ADS stream moves to the new one at once; the registration stream stays where it is
(see registration.py) and the old channel closes when nothing uses it any more. The
ROOTCA secret's trust bundle (and the CRLs with it: revoked peers are refused from then
on, and their open connections closed) replaces the bundle while the leaf stays.

Stop: `/ready` fails and HTTP/1.1 responses carry `Connection: close` from the first
moment; the registration reports `draining` (peers stop choosing this instance),
`drain_notice` seconds pass so their configuration catches up, the data path stops
accepting and finishes in-flight requests (within the sidecar's `drain_timeout`), then
the registration stream is closed (deregistration) and the channels with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import random
from dataclasses import dataclass, field

from gossamer.certs.rotation import renewal_time
from gossamer.certs.spiffe import SpiffeId
from gossamer.contract import mesh_pb2
from gossamer.errors import GossamerError, UpstreamConnectError
from gossamer.logs import event
from gossamer.proxy.agent.bootstrap import WorkloadCredentials, bootstrap, mtls_context, renew
from gossamer.proxy.agent.channels import ControlChannels, reconnect_delay
from gossamer.proxy.agent.registration import Registration
from gossamer.proxy.config import NodeInfo
from gossamer.proxy.sidecar import Sidecar
from gossamer.proxy.transport.local_networks import local_addresses
from gossamer.proxy.transport.tls_contexts import Credentials
from gossamer.proxy.xds.client import XdsClient
from gossamer.proxy.xds.translate import AppPortArg, TrustBundle

log = logging.getLogger("gossamer.proxy.agent.session")


@dataclass(frozen=True)
class AgentOptions:
    control: tuple[str, int]
    bootstrap: tuple[str, int]
    token: str
    instance_id: str
    app_ports: tuple[AppPortArg, ...] = ()
    cert_ttl: int = 0  # seconds asked for (0: the control plane's default)
    address: str = ""  # advertised address (empty: the one the control plane sees)
    weight: int = 1
    labels: dict[str, str] = field(default_factory=dict)
    drain_notice: float = 1.0
    max_backoff: float = 5.0


class Agent:
    def __init__(
        self, sidecar: Sidecar, options: AgentOptions, *, rng: random.Random | None = None
    ) -> None:
        self.sidecar = sidecar
        self.options = options
        self.rng = rng or random.Random()
        self.credentials: WorkloadCredentials | None = None
        self.channels: ControlChannels | None = None
        self.xds: XdsClient | None = None
        self.registration: Registration | None = None
        self.renewals = 0
        self.crl_pem = b""  # the CRLs of the last ROOTCA secret
        self._received = dt.datetime.now(dt.UTC)  # when the current leaf arrived
        self._tasks: list[asyncio.Task[None]] = []

    # -- start-up ----------------------------------------------------------------------
    async def _bootstrap(self) -> WorkloadCredentials:
        host, port = self.options.bootstrap
        node = self.sidecar.options.node
        attempt = 0
        while True:
            try:
                return await bootstrap(
                    host,
                    port,
                    self.options.token,
                    node.service,
                    node.namespace,
                    ttl_seconds=self.options.cert_ttl,
                    instance_id=self.options.instance_id,
                )
            except UpstreamConnectError as exc:
                attempt += 1
                delay = reconnect_delay(attempt, self.rng, cap=self.options.max_backoff)
                event(
                    log,
                    logging.WARNING,
                    "control plane unreachable; retrying",
                    error=exc.message,
                    retry_in=round(delay, 2),
                )
                await asyncio.sleep(delay)

    def _install(self, creds: WorkloadCredentials) -> None:
        if self.credentials is None or creds.chain_pem != self.credentials.chain_pem:
            self._received = dt.datetime.now(dt.UTC)
        self.credentials = creds
        self.sidecar.rotate(
            Credentials(creds.chain_pem, creds.key_pem, creds.bundle_pem, self.crl_pem)
        )

    def _on_bundle(self, trust: TrustBundle) -> None:
        creds = self.credentials
        if creds is None or (trust.bundle, trust.crl) == (creds.bundle_pem, self.crl_pem):
            return
        previous = self.crl_pem
        self.crl_pem = trust.crl
        try:
            self._install(dataclasses.replace(creds, bundle_pem=trust.bundle))
        except GossamerError:
            self.crl_pem, self.credentials = previous, creds  # NACKed: the last good stay
            raise
        event(log, logging.INFO, "trust bundle updated", crl_bytes=len(trust.crl))

    async def start(self) -> None:
        creds = await self._bootstrap()
        self._install(creds)
        opts, sidecar = self.options, self.sidecar
        sid = SpiffeId.parse(creds.spiffe_id)
        node = dataclasses.replace(sidecar.options.node, trust_domain=sid.trust_domain)
        self.channels = ControlChannels(*opts.control, mtls_context(creds))
        self.xds = XdsClient(
            NodeInfo(node.service, node.namespace, node.zone, node.node, node.trust_domain),
            opts.instance_id,
            channels=self.channels,
            apply=sidecar.apply,
            on_bundle=self._on_bundle,
            metrics=sidecar.telemetry.metrics,
            app_ports=opts.app_ports,
            rng=self.rng,
            max_backoff=opts.max_backoff,
        )
        sidecar.xds_status = self.xds.status
        self.registration = Registration(self.channels, self._instance(), rng=self.rng)
        registration = self.registration
        sidecar.probe.on_change = lambda ready: registration.set_health(
            "healthy" if ready else "unhealthy"
        )
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self.xds.run(), name="xds"),
            loop.create_task(registration.run(), name="registration"),
            loop.create_task(self._renewals(), name="renewal"),
        ]

    def _instance(self) -> mesh_pb2.Instance:
        opts, sidecar = self.options, self.sidecar
        node = sidecar.options.node
        explicit = [a.service_port for a in opts.app_ports if a.service_port is not None]
        return mesh_pb2.Instance(
            instance_id=opts.instance_id,
            address=opts.address,
            port=sidecar.bound_ports["inbound"],
            # every --app-port names its service port: serve exactly those, else all
            service_ports=explicit if len(explicit) == len(opts.app_ports) else [],
            zone=node.zone,
            node=node.node,
            labels=opts.labels,
            weight=opts.weight,
            admin_port=sidecar.bound_ports["admin"],
            metrics_port=sidecar.bound_ports.get("metrics", 0),
            health="healthy" if sidecar.probe.ready else "unhealthy",
            service=node.service,
            namespace=node.namespace,
            # several networks: peers on the others reach this instance there
            other_addresses=[] if opts.address else local_addresses(),
        )

    # -- renewal -----------------------------------------------------------------------
    async def _renewals(self) -> None:
        while True:
            creds = self.credentials
            assert creds is not None and self.channels is not None
            # the leaf's life counts from when it arrived: not_before is backdated by a
            # minute for clock skew, which would put a short-lived leaf's 50-80% behind us
            start = max(creds.not_before, self._received)
            at = renewal_time(start, creds.not_after, self.rng)
            await asyncio.sleep(max(0.0, (at - dt.datetime.now(dt.UTC)).total_seconds()))
            new = await self._renew_once(creds)
            bundle = self.credentials.bundle_pem if self.credentials else new.bundle_pem
            installed = dataclasses.replace(new, bundle_pem=bundle)
            self._install(installed)
            await self.channels.replace(mtls_context(installed))
            assert self.xds is not None
            self.xds.restart()
            self.renewals += 1

    async def _renew_once(self, creds: WorkloadCredentials) -> WorkloadCredentials:
        attempt = 0
        assert self.channels is not None
        while True:
            channel = self.channels.acquire()
            try:
                return await renew(channel, ttl_seconds=self.options.cert_ttl)
            except GossamerError as exc:
                attempt += 1
                left = (creds.not_after - dt.datetime.now(dt.UTC)).total_seconds()
                delay = min(reconnect_delay(attempt, self.rng), max(0.5, left / 10))
                event(
                    log,
                    logging.ERROR if left < 60 else logging.WARNING,
                    "certificate renewal failed; retrying",
                    error=exc.message,
                    seconds_left=round(left),
                    retry_in=round(delay, 2),
                )
            finally:
                await self.channels.release(channel)
            await asyncio.sleep(delay)

    # -- stop --------------------------------------------------------------------------
    async def stop(self, grace: float | None = None) -> None:
        registration = self.registration
        self.sidecar.begin_drain()
        if registration is not None and registration.registered and await registration.drain():
            await asyncio.sleep(self.options.drain_notice)
        await self.sidecar.stop(grace)
        if registration is not None:
            await registration.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.channels is not None:
            await self.channels.close()
