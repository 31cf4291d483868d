"""The sidecar's xDS client: one ADS stream (state of the world) over mutual TLS.

The protocol rules live in ads_state.py (ACK/NACK, dependent names, reconnects) and the
translation in translate.py; this module does the I/O around them:

- `run()` keeps one AggregatedDiscoveryService stream open on the channel the agent
  provides, sends what the state machine says, and answers every response at once.
- A response is decoded, joined with the last accepted value of the other types (EDS
  and RDS responses carry only what changed: they are merged by name into what was
  accepted before, restricted to the names subscribed to now), and
  applied to the sidecar (`Sidecar.apply`, two-phase): only then is it ACKed. Anything
  that raises (a resource the sidecar cannot honour, a combination the data path
  rejects) is NACKed with the error, and the previous configuration stays in use.
  The first configuration is applied only once clusters, listeners, the routes they
  name and the endpoints arrived (`translate.missing`).
- The ROOTCA secret's trust bundle and CRLs go to `on_bundle` (the agent rotates the
  sidecar's credentials with them, keeping the current leaf; connections to or from a
  peer the new CRLs revoke are closed).
- When the stream fails, the configuration in use stays (static stability); the failure
  is reported to the channels (agent/channels.py), which move to the next control-plane
  replica when it says the replica is gone, and the client reconnects at once while a
  replica is left untried in this round, else after a jittered exponential back-off,
  resending the accepted versions so an unchanged server sends nothing new (replicas
  serve identical, content-hashed versions). `restart()` moves to the current channel
  at once (after a certificate renewal or a move to another replica).
- `restore()` replays resources kept in the state directory (agent/state.py) through
  the same decoders before any control plane answers; `on_accepted` is told after
  every ACK so the agent can keep the accepted resources there.
- `gossamer_xds_updates_total` / `gossamer_xds_nacks_total` count ACKs and NACKs.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import random
from collections.abc import Callable, Sequence
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import json_format, struct_pb2
from google.protobuf.message import DecodeError

from gossamer.contract import xds
from gossamer.contract.xds import ADS_PATH, NAMESPACE_KEY, NODE_KEY, SERVICE_KEY, SHORT_NAMES
from gossamer.logs import event
from gossamer.proxy.agent.channels import Channels
from gossamer.proxy.agent.state import decode_resources, encode_resources
from gossamer.proxy.config import NodeInfo, ProxyConfig
from gossamer.proxy.telemetry.metrics import SidecarMetrics
from gossamer.proxy.transport.grpc_client import GrpcError
from gossamer.proxy.transport.local_networks import local_networks
from gossamer.proxy.xds import ads_state as ads
from gossamer.proxy.xds.clusters import decode_clusters
from gossamer.proxy.xds.endpoints import decode_endpoints
from gossamer.proxy.xds.listeners import decode_listeners, decode_routes
from gossamer.proxy.xds.translate import (
    AppPortArg,
    Pieces,
    TrustBundle,
    assemble,
    decode_trust,
    missing,
)

log = logging.getLogger("gossamer.proxy.xds")


def make_node(info: NodeInfo, instance_id: str) -> base_pb2.Node:
    metadata = struct_pb2.Struct()
    metadata.update({SERVICE_KEY: info.service, NAMESPACE_KEY: info.namespace})
    if info.node:
        metadata.update({NODE_KEY: info.node})
    return base_pb2.Node(
        id=f"{info.service}.{info.namespace}~{instance_id}",
        cluster=info.service,
        metadata=metadata,
        locality=base_pb2.Locality(zone=info.zone),
        user_agent_name="gossamer-sidecar",
    )


class XdsClient:
    def __init__(
        self,
        node: NodeInfo,
        instance_id: str,
        *,
        channels: Channels,
        apply: Callable[[ProxyConfig], None],
        on_bundle: Callable[[TrustBundle], None],
        metrics: SidecarMetrics,
        app_ports: Sequence[AppPortArg] = (),
        rng: random.Random | None = None,
        max_backoff: float = 5.0,
        on_accepted: Callable[[], None] | None = None,
    ) -> None:
        self.node = node
        self.on_accepted = on_accepted
        self.channels = channels
        self.apply = apply
        self.on_bundle = on_bundle
        self.metrics = metrics
        self.app_ports = tuple(app_ports)
        self.rng = rng or random.Random()
        self.max_backoff = max_backoff
        # this namespace's networks, read once: which address of a multi-network
        # instance to connect to
        self.networks = local_networks()
        self.pieces = Pieces()
        self.bundle: TrustBundle | None = None
        self.applied_versions: dict[str, str] = {}
        self.raw: dict[str, list[Any]] = {}  # type URL -> the accepted resources
        self._raw_names: dict[str, dict[str, Any]] = {}
        self.connected = False
        self.last_error: str | None = None
        self.streams = 0
        self.target = ""  # the control plane replica the last stream opened on
        self._incoming: tuple[str, list[Any]] = ("", [])
        self._incoming_version = ""
        self._stream: Any = None
        self._restart = False
        self.state = ads.AdsState(
            make_node(node, instance_id),
            {
                xds.CLUSTER: self._clusters,
                xds.ENDPOINT: self._endpoints,
                xds.LISTENER: self._listeners,
                xds.ROUTE: self._routes,
                xds.SECRET: self._secret,
            },
        )

    # -- decoders (raise to NACK) -----------------------------------------------------
    def _commit(self, pieces: Pieces) -> None:
        """Apply the configuration these pieces make, if complete; keep them if it works."""
        type_url, _ = self._incoming
        versions = {SHORT_NAMES[t]: s.accepted_version for t, s in self.state.subs.items()}
        versions[SHORT_NAMES[type_url]] = self.state_version
        versions.pop("SDS", None)
        if not missing(pieces):
            self.apply(assemble(self.node, pieces, self.app_ports, versions))
            self.applied_versions = versions
        self.pieces = pieces

    def _clusters(self, resources: Sequence[Any]) -> ads.Decoded:
        cds = decode_clusters(resources)
        if cds.ignored and cds != self.pieces.clusters:
            event(log, logging.WARNING, "clusters left out", clusters=dict(cds.ignored))
        self._commit(self.pieces.replace(clusters=cds))
        return ads.Decoded(cds, cds.eds_names)

    def _subscribed(self, type_url: str, merged: dict[str, Any]) -> dict[str, Any]:
        names = set(self.state.subs[type_url].names)
        return {name: value for name, value in merged.items() if name in names}

    def _endpoints(self, resources: Sequence[Any]) -> ads.Decoded:
        eds = decode_endpoints(resources, self.networks)
        merged = self._subscribed(xds.ENDPOINT, {**self.pieces.endpoints, **eds})
        self._commit(self.pieces.replace(endpoints=merged, endpoints_seen=True))
        return ads.Decoded(eds)

    def _listeners(self, resources: Sequence[Any]) -> ads.Decoded:
        lds = decode_listeners(resources, self.node.trust_domain)
        self._commit(self.pieces.replace(listeners=lds))
        return ads.Decoded(lds, lds.rds_names)

    def _routes(self, resources: Sequence[Any]) -> ads.Decoded:
        rds = decode_routes(resources)
        merged = self._subscribed(xds.ROUTE, {**self.pieces.routes, **rds})
        self._commit(self.pieces.replace(routes=merged))
        return ads.Decoded(rds)

    def _secret(self, resources: Sequence[Any]) -> ads.Decoded:
        trust = decode_trust(resources)
        if trust is not None and trust != self.bundle:
            # ConfigError: a bundle or CRL the TLS stack refuses -> NACK
            self.on_bundle(trust)
            self.bundle = trust
        return ads.Decoded(trust)

    @property
    def state_version(self) -> str:
        return self._incoming_version

    # -- the stream --------------------------------------------------------------------
    def handle(self, response: Any) -> list[Any]:
        """Process one DiscoveryResponse; returns the requests to send."""
        sub = self.state.subs.get(response.type_url)
        before = (sub.acks, sub.nacks) if sub is not None else (0, 0)
        self._incoming = (response.type_url, list(response.resources))
        self._incoming_version = response.version_info
        requests = self.state.handle(response)
        if sub is not None:
            kind = SHORT_NAMES.get(response.type_url, response.type_url)
            if sub.nacks > before[1]:
                self.metrics.xds_nack(kind)
                event(
                    log,
                    logging.WARNING,
                    "configuration rejected (NACK); keeping the last good one",
                    type=kind,
                    version=response.version_info,
                    error=sub.last_error,
                )
            elif sub.acks > before[0]:
                self.metrics.xds_update(kind)
                self._keep_raw(response, sub)
                if self.on_accepted is not None:
                    self.on_accepted()
        return requests

    # -- kept across restarts (agent/state.py) ----------------------------------------
    def export(self) -> dict[str, Any] | None:
        """The accepted resources and versions of every type, for the state directory;
        None while they do not make a complete configuration."""
        if missing(self.pieces):
            return None
        out: dict[str, Any] = {}
        for type_url, sub in self.state.subs.items():
            if sub.acks or type_url in self.raw:
                resources = self.raw.get(type_url, [])
                out[type_url] = {
                    "version": sub.accepted_version,
                    "resources": encode_resources(resources),
                }
        return out

    def restore(self, saved: dict[str, Any]) -> bool:
        """Replay stored resources (`export()` form) as if the control plane had sent
        them, in push order; True when they make a complete configuration, applied."""
        on_accepted, self.on_accepted = self.on_accepted, None
        try:
            for type_url in ads.ORDER:
                entry = saved.get(type_url)
                if not isinstance(entry, dict):
                    continue
                response = discovery_pb2.DiscoveryResponse(
                    version_info=str(entry.get("version", "")), type_url=type_url
                )
                for wire in decode_resources(list(entry.get("resources", []))):
                    response.resources.add().ParseFromString(wire)
                self.handle(response)
        except (ValueError, TypeError, DecodeError) as exc:
            event(log, logging.WARNING, "stored configuration unreadable; ignored", error=str(exc))
        finally:
            self.on_accepted = on_accepted
        return not missing(self.pieces)

    def _keep_raw(self, response: Any, sub: ads.Subscription) -> None:
        """The accepted resources, for /config_dump: all of them for wildcard types,
        merged by name (and pruned to the subscription) for the others."""
        resources = list(response.resources)
        if sub.wildcard or not isinstance(sub.applied, dict):
            self.raw[response.type_url] = resources
            return
        by_name = dict(self._raw_names.get(response.type_url, {}))
        by_name.update(zip(sub.applied, resources, strict=False))
        by_name = {n: r for n, r in by_name.items() if n in set(sub.names)}
        self._raw_names[response.type_url] = by_name
        self.raw[response.type_url] = list(by_name.values())

    async def run(self) -> None:
        attempt = 0
        while True:
            channel = self.channels.acquire()
            status = "UNAVAILABLE"  # a stream the server ends is a replica going away
            try:
                got_response = await self._stream_on(channel)
                self.last_error = "the control plane ended the stream"
            except GrpcError as exc:
                got_response = False
                status = exc.code().name
                self.last_error = f"{status}: {exc.details()}"
            finally:
                self.connected = False
                self._stream = None
            try:
                if not self._restart:
                    self.channels.failed(channel, status)  # may move to another replica
            finally:
                await self.channels.release(channel)
            if self._restart:
                self._restart, attempt = False, 0
                continue
            attempt = 0 if got_response else attempt + 1
            delay = self.channels.retry_delay(attempt, self.rng, self.max_backoff)
            event(
                log,
                logging.WARNING,
                "xDS stream lost; serving the last good configuration",
                error=self.last_error,
                retry_in=round(delay, 2),
            )
            await asyncio.sleep(delay)

    async def _stream_on(self, channel: Any) -> bool:
        stream = self._stream = await channel.stream(ADS_PATH)
        self.streams += 1
        for request in self.state.initial_requests():
            await stream.send(request.SerializeToString())
        got = False
        while (raw := await stream.recv()) is not None:
            if not got:
                got, self.connected, self.last_error = True, True, None
                self.target = channel.target
                self.channels.succeeded(channel)
                event(log, logging.INFO, "xDS stream open", target=channel.target)
            response = discovery_pb2.DiscoveryResponse.FromString(raw)
            for request in self.handle(response):
                await stream.send(request.SerializeToString())
        return got

    def restart(self) -> None:
        """Reconnect now (on the current channel: after a renewal or a move to another
        control-plane replica), without back-off."""
        stream = self._stream
        if stream is not None:
            self._restart = True
            stream.cancel()

    # -- introspection -----------------------------------------------------------------
    def status(self, *, resources: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "connected": self.connected,
            "last_error": self.last_error,
            "streams": self.streams,
            "target": self.target,
            "waiting_for": missing(self.pieces),
            "types": {},
        }
        for type_url, sub in self.state.subs.items():
            entry: dict[str, Any] = {
                "version": sub.accepted_version,
                "names": list(sub.names) if not sub.wildcard else "*",
                "acks": sub.acks,
                "nacks": sub.nacks,
                "last_nack_error": sub.last_error,
            }
            if resources:
                entry["resources"] = [_as_json(r) for r in self.raw.get(type_url, [])]
            out["types"][SHORT_NAMES[type_url]] = entry
        clusters = self.pieces.clusters
        if clusters is not None and clusters.ignored:
            out["ignored_clusters"] = dict(clusters.ignored)
        return out


# Types inside the resources that decoding never needs (only their type URL is read);
# loaded on the first /config_dump so the JSON shows them too.
DUMP_ONLY_MODULES = (
    "envoy.extensions.transport_sockets.raw_buffer.v3.raw_buffer_pb2",
    "envoy.extensions.filters.http.router.v3.router_pb2",
    "envoy.extensions.filters.listener.tls_inspector.v3.tls_inspector_pb2",
    "envoy.extensions.load_balancing_policies.round_robin.v3.round_robin_pb2",
    "envoy.extensions.load_balancing_policies.random.v3.random_pb2",
    "envoy.extensions.load_balancing_policies.least_request.v3.least_request_pb2",
)


def _as_json(packed: Any) -> Any:
    """One accepted resource as JSON (a type this build does not know stays opaque)."""
    for module in DUMP_ONLY_MODULES:
        importlib.import_module(module)
    try:
        return json_format.MessageToDict(packed)
    except (TypeError, KeyError) as exc:
        return {"@type": packed.type_url, "note": f"not shown: {exc}"}
