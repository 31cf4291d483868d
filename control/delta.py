"""Incremental ADS: `DeltaAggregatedResources`.

Theory of operation (spec: envoyproxy/envoy docs/root/api-docs/xds_protocol.rst,
§"Incremental xDS", https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol)
-------------------------------------------------------------------------------------
- Every resource has its own version (a hash of its bytes, identical on every replica);
  a response carries only resources whose version differs from what the client holds,
  plus `removed_resources`. `system_version_info` is the type's snapshot version, for
  debugging only.
- Nonces pair a response with its ACK/NACK; "the server must honor changes to the
  subscription state even if the nonce is stale", so subscription changes are applied
  whatever the nonce, and only ACK/NACK bookkeeping looks at it. ACK/NACK is the
  absence/presence of `error_detail`; a NACK is recorded and nothing is resent.
- Subscriptions: `resource_names_subscribe` / `_unsubscribe` change the set; `*` is the
  wildcard; a first request that subscribes to nothing is a legacy wildcard. Naming a
  resource again later forces it to be resent (§"Subscribing to Resources": the client
  may have forgotten it). Unsubscribing a name while also subscribed to `*` must be
  answered with the resource (if the wildcard covers it) or its removal
  (§"Unsubscribing from Resources").
- Reconnect: the first request of a type may carry `initial_resource_versions`; those
  are what the client holds, so only differences are sent (§"Incremental xDS",
  reconnect figure). A name requested but absent is reported once in
  `removed_resources` so the client need not wait for a timeout.
- Order and pacing are shared with SotW (ads_stream.py): CDS, EDS, LDS, RDS, SDS; one
  coalesced pending snapshot per stream.
"""

from __future__ import annotations

from collections import OrderedDict

from envoy.service.discovery.v3 import discovery_pb2

from gossamer.contract import xds
from gossamer.errors import RemoteProtocolError

from .ads_stream import AdsStream, StreamEnvironment
from .cache import WILDCARD, DeltaSubscription, Snapshot, delta_update

OUTSTANDING_NONCES = 16


class DeltaStream(
    AdsStream[discovery_pb2.DeltaDiscoveryRequest, discovery_pb2.DeltaDiscoveryResponse]
):
    protocol = "delta"

    def __init__(self, env: StreamEnvironment, peer: str, identity: str | None = None) -> None:
        super().__init__(env, peer, identity)
        self.subscriptions: dict[str, DeltaSubscription] = {}
        self._outstanding: dict[str, OrderedDict[str, str]] = {}

    def on_request(self, request: discovery_pb2.DeltaDiscoveryRequest) -> None:
        if self.group is None:
            if not request.HasField("node") or not request.node.id:
                raise RemoteProtocolError(
                    "the first request on an ADS stream must carry the node id"
                )
            self.attach(request.node)
        type_url = request.type_url
        if not type_url:
            raise RemoteProtocolError("an ADS request must name its type_url")
        if request.response_nonce:
            self._ack_or_nack(request)
        self._subscribe(request)
        self.wake()

    def _ack_or_nack(self, request: discovery_pb2.DeltaDiscoveryRequest) -> None:
        type_url = request.type_url
        version = self._outstanding.get(type_url, OrderedDict()).pop(request.response_nonce, None)
        if version is None:
            self.info.stale_nonces += 1
        elif request.HasField("error_detail"):
            self.record_nack(type_url, version, request.error_detail.message)
        else:
            self.info.record_ack(type_url, version)

    def _subscribe(self, request: discovery_pb2.DeltaDiscoveryRequest) -> None:
        type_url = request.type_url
        sub = self.subscriptions.get(type_url)
        first = sub is None
        if sub is None:
            sub = self.subscriptions[type_url] = DeltaSubscription()
            sub.known = dict(request.initial_resource_versions)
            if not request.resource_names_subscribe:
                sub.wildcard = True
        for name in request.resource_names_subscribe:
            if name == WILDCARD:
                sub.wildcard = True
                continue
            if not first:
                sub.known.pop(name, None)
            sub.names.add(name)
            sub.told_absent.discard(name)
        for name in request.resource_names_unsubscribe:
            if name == WILDCARD:
                sub.wildcard = False
                for held in [n for n in sub.known if n not in sub.names]:
                    del sub.known[held]
                continue
            sub.names.discard(name)
            sub.told_absent.discard(name)
            if sub.wildcard:
                if sub.known.pop(name, None) is None:
                    sub.force_removed.add(name)
            else:
                sub.known.pop(name, None)
        self.info.record_subscription(type_url, sub.wildcard, len(sub.names))

    def responses(self, snapshot: Snapshot) -> list[discovery_pb2.DeltaDiscoveryResponse]:
        out = []
        order = list(xds.PUSH_ORDER) + sorted(set(self.subscriptions) - set(xds.PUSH_ORDER))
        for type_url in order:
            sub = self.subscriptions.get(type_url)
            if sub is None:
                continue
            current = snapshot.get(type_url)
            updates, removed = delta_update(current, sub)
            if not updates and not removed:
                continue
            nonce = self.next_nonce()
            pending = self._outstanding.setdefault(type_url, OrderedDict())
            pending[nonce] = current.version
            while len(pending) > OUTSTANDING_NONCES:
                pending.popitem(last=False)
            self.info.record_sent(type_url, current.version)
            out.append(
                discovery_pb2.DeltaDiscoveryResponse(
                    system_version_info=current.version,
                    resources=[
                        discovery_pb2.Resource(name=r.name, version=r.version, resource=r.body)
                        for r in updates
                    ],
                    type_url=type_url,
                    removed_resources=removed,
                    nonce=nonce,
                    control_plane={"identifier": self.env.control_plane_id},
                )
            )
        return out
