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

Several control-plane replicas (`control`, in preference order; replicas.py): bootstrap
tries the `bootstrap` addresses in turn; ADS, registration and renewal use the current
replica's channel (channels.py), move to the next replica within moments when it fails,
and back to the preferred one when a probe finds it answering again. Each move is
logged, counted (`gossamer_control_plane_moves_total`) and shown in `/config_dump`
(`xds.control_plane`).

Static stability across restarts (`state_dir`; state.py, state_keeper.py): the
certificate, key, trust bundle and CRLs, and the last accepted xDS resources are kept
there. A restart that finds a usable identity installs it and the stored configuration
before any control plane answers, so the sidecar serves (and is ready) at once; the
join token is then not presented at all (it may have expired or been used up), and is
only needed again if the stored leaf is unusable or expires while no control plane can
renew it. Then ADS (sending the stored versions), registration and renewal go on in
the background as usual.

Renewal: at `renewal_time()` (50-80% of the leaf's life) a new key is certified over the
mTLS channel (retried on every replica in turn, with back-off once all failed), swapped into the data path (open
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
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gossamer.certs.rotation import renewal_time
from gossamer.certs.spiffe import SpiffeId
from gossamer.contract import mesh_pb2
from gossamer.errors import AuthorizationDenied, GossamerError, UpstreamConnectError
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
from gossamer.proxy.agent.replicas import Address, ReplicaSet
from gossamer.proxy.agent.state_keeper import StateKeeper
from gossamer.proxy.agent.tap_stream import TapStream
from gossamer.proxy.config import NodeInfo
from gossamer.proxy.sidecar import Sidecar
from gossamer.proxy.transport.local_networks import local_addresses
from gossamer.proxy.transport.tls_contexts import Credentials
from gossamer.proxy.xds.client import XdsClient
from gossamer.proxy.xds.translate import AppPortArg, TrustBundle

log = logging.getLogger("gossamer.proxy.agent.session")


class NoIdentity(GossamerError):
    """Neither a usable state directory nor a join token."""


async def start_unless_stopped(start: Awaitable[None], stopping: asyncio.Event) -> None:
    """Run an agent's start-up (bootstrap, retried while no control plane answers) until
    it ends or `stopping` is set, whichever comes first; a start-up that failed raises
    here (a refused join token ends the process with the reason)."""
    starting = asyncio.ensure_future(start)
    stopped = asyncio.ensure_future(stopping.wait())
    await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():
        starting.cancel()
    else:
        stopped.cancel()
        starting.result()


@dataclass(frozen=True)
class AgentOptions:
    control: tuple[Address, ...]  # in preference order: this node's replica first
    bootstrap: tuple[Address, ...]
    token: str  # "" only with a state directory
    instance_id: str
    app_ports: tuple[AppPortArg, ...] = ()
    cert_ttl: int = 0  # seconds asked for (0: the control plane's default)
    address: str = ""  # advertised address (empty: the one the control plane sees)
    weight: int = 1
    labels: dict[str, str] = field(default_factory=dict)
    drain_notice: float = 1.0
    max_backoff: float = 5.0
    state_dir: Path | None = None
    probe_interval: float = 30.0  # seconds between probes of the preferred replica


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
        self.restored = False  # started from the state directory
        self.crl_pem = b""  # the CRLs of the last ROOTCA secret
        self._received = dt.datetime.now(dt.UTC)  # when the current leaf arrived
        self._tasks: list[asyncio.Task[None]] = []
        self._bootstrapped_again = False  # the renewal loop got a token-made leaf
        node = sidecar.options.node
        self.keeper = (
            StateKeeper(options.state_dir, node.service, node.namespace, options.instance_id)
            if options.state_dir is not None
            else None
        )

    # -- start-up ----------------------------------------------------------------------
    async def _bootstrap(self) -> WorkloadCredentials:
        """Certify with the join token, trying the bootstrap addresses in turn."""
        if not self.options.token:
            raise NoIdentity(
                f"no usable identity in the state directory {self.options.state_dir} "
                "and no join token",
                hint="give --token-file (or $GOSSAMER_TOKEN) for the first start",
            )
        return await bootstrap_in_turn(
            self.options.bootstrap, self._bootstrap_at, self.rng, self.options.max_backoff
        )

    async def _bootstrap_at(self, host: str, port: int) -> WorkloadCredentials:
        node = self.sidecar.options.node
        return await bootstrap(
            host,
            port,
            self.options.token,
            node.service,
            node.namespace,
            ttl_seconds=self.options.cert_ttl,
            instance_id=self.options.instance_id,
        )

    def _install(self, creds: WorkloadCredentials, received: dt.datetime | None = None) -> None:
        if received is not None:
            self._received = received
        elif self.credentials is None or creds.chain_pem != self.credentials.chain_pem:
            self._received = dt.datetime.now(dt.UTC)
        self.credentials = creds
        self.sidecar.rotate(
            Credentials(creds.chain_pem, creds.key_pem, creds.bundle_pem, self.crl_pem)
        )
        if self.keeper is not None:
            self.keeper.save_identity(creds, self.crl_pem, self._received)

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

    def _restore_identity(self) -> WorkloadCredentials | None:
        """The stored certificate, installed, if the state directory holds a usable one."""
        if self.keeper is None:
            return None
        found = self.keeper.load_identity()
        if found is None:
            return None
        creds, crl, received = found
        self.crl_pem = crl
        self._install(creds, received)
        return creds

    async def start(self) -> None:
        creds = self._restore_identity()
        self.restored = creds is not None
        if creds is None:
            creds = await self._bootstrap()
            self._install(creds)
        opts, sidecar = self.options, self.sidecar
        sid = SpiffeId.parse(creds.spiffe_id)
        node = dataclasses.replace(sidecar.options.node, trust_domain=sid.trust_domain)
        replicas = ReplicaSet(opts.control, probe_interval=opts.probe_interval, rng=self.rng)
        self.channels = ControlChannels(replicas, mtls_context(creds))
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
        if self.keeper is not None:
            self.keeper.attach(self.xds, restore=self.restored)
        sidecar.xds_status = self._xds_status
        sidecar.telemetry.metrics.add_counter(
            "gossamer_control_plane_moves",
            "Moves of this sidecar from one control-plane replica to another.",
            lambda: replicas.moves,
        )
        self.registration = Registration(self.channels, self._instance(), rng=self.rng)
        registration, xds = self.registration, self.xds
        tap = TapStream(self.channels, sidecar.telemetry.tap, opts.instance_id, rng=self.rng)
        self.channels.on_move += [xds.restart, registration.move, tap.move]
        sidecar.probe.on_change = lambda ready: registration.set_health(
            "healthy" if ready else "unhealthy"
        )
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(xds.run(), name="xds"),
            loop.create_task(registration.run(), name="registration"),
            loop.create_task(self._renewals(), name="renewal"),
            loop.create_task(tap.run(), name="tap"),  # gossamer tap (agent/tap_stream.py)
        ]
        if replicas.several:
            self._tasks.append(loop.create_task(self.channels.run_probes(), name="probes"))
        if self.keeper is not None:
            self._tasks.append(loop.create_task(self.keeper.run(), name="state"))

    def _xds_status(self, *, resources: bool = False) -> dict[str, Any]:
        assert self.xds is not None and self.channels is not None
        out = self.xds.status(resources=resources)
        out["control_plane"] = {
            **self.channels.status(),
            "registered_at": self.registration.target if self.registration else "",
            "started_from_state": self.restored,
        }
        return out

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
            if self.restored and self.renewals == 0:
                # a leaf from the state directory is renewed as soon as a replica answers:
                # a fresh key, and a leaf revoked meanwhile is replaced (with the token)
                at = dt.datetime.now(dt.UTC)
            await asyncio.sleep(max(0.0, (at - dt.datetime.now(dt.UTC)).total_seconds()))
            new = await self._renew_once(creds)
            if self._bootstrapped_again:  # its own trust: the CA may have changed
                self._bootstrapped_again, self.crl_pem, installed = False, b"", new
            else:
                bundle = self.credentials.bundle_pem if self.credentials else new.bundle_pem
                installed = dataclasses.replace(new, bundle_pem=bundle)
            self._install(installed)
            await self.channels.replace(mtls_context(installed))
            assert self.xds is not None
            self.xds.restart()
            self.renewals += 1
            event(log, logging.INFO, "certificate renewed", control=self.channels.target,
                  renewals=self.renewals)  # fmt: skip

    async def _renew_once(self, creds: WorkloadCredentials) -> WorkloadCredentials:
        """Renew over the current replica's channel, retrying (and failing over) until
        it works; a leaf that expired meanwhile is replaced with the join token."""
        attempt = 0
        assert self.channels is not None
        while True:
            left = (creds.not_after - dt.datetime.now(dt.UTC)).total_seconds()
            if left <= 0 and self.options.token:
                with contextlib.suppress(UpstreamConnectError):
                    return await self._bootstrap_any()
            channel = self.channels.acquire()
            try:
                return await renew(channel, ttl_seconds=self.options.cert_ttl)
            except GossamerError as exc:
                attempt += 1
                if isinstance(exc, UpstreamConnectError):
                    self.channels.failed(channel, "UNAVAILABLE")
                if self._leaf_refused(exc) and self.options.token:
                    replaced = await self._bootstrap_fallback(exc)
                    if replaced is not None:
                        return replaced
                delay = self.channels.retry_delay(attempt, self.rng, self.options.max_backoff)
                delay = min(delay, max(0.5, left / 10))
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

    def _leaf_refused(self, exc: GossamerError) -> bool:
        """The control plane refuses this leaf (revoked; or, for a leaf from the state
        directory, one its TLS does not accept: another CA)."""
        if isinstance(exc, AuthorizationDenied):
            return True
        text = exc.message
        return (
            self.restored
            and self.renewals == 0
            and ("TLS" in text or "SSL" in text or "certificate" in text)
        )

    async def _bootstrap_fallback(self, exc: GossamerError) -> WorkloadCredentials | None:
        event(log, logging.WARNING, "the control plane refuses this certificate; "
              "bootstrapping again with the join token", error=exc.message)  # fmt: skip
        try:
            return await self._bootstrap_any()
        except GossamerError as failed:
            event(log, logging.ERROR, "bootstrap with the join token failed", error=failed.message)
            return None

    async def _bootstrap_any(self) -> WorkloadCredentials:
        """One pass over the bootstrap addresses with the join token."""
        error = "no bootstrap address"
        for host, port in self.options.bootstrap:
            try:
                creds = await self._bootstrap_at(host, port)
                self._bootstrapped_again = True
                return creds
            except UpstreamConnectError as exc:
                error = exc.message
        raise UpstreamConnectError(error)

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
        if self.keeper is not None:
            await self.keeper.flush()  # the last accepted configuration, at a clean stop
        if self.channels is not None:
            await self.channels.close()
