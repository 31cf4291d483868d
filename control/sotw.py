"""State-of-the-world ADS: `StreamAggregatedResources`.

Theory of operation (spec: envoyproxy/envoy docs/root/api-docs/xds_protocol.rst,
https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol)
-------------------------------------------------------------------------------------
- Versions are per type (§"ACK/NACK and resource type instance version"): a response
  carries the group snapshot's version of its type; nonces are per stream, one per
  response, and we remember the latest per type.
- A request whose `response_nonce` is not the latest we sent for its type is stale
  (§"Resource updates": "The management server should not send a DiscoveryResponse
  for any DiscoveryRequest that has a stale nonce"): its subscription is ignored and it
  gets no response; the client repeats its subscription when it ACKs the newer
  response. Only its ACK/NACK of that older response is noted for the operator. An
  empty nonce is a new request, never stale.
- ACK/NACK (§"ACK and NACK semantics summary"): a request with the latest nonce is a
  NACK if it carries `error_detail` (recorded with the rejected version and the error),
  otherwise an ACK of `version_info`. After a NACK nothing is resent: the client keeps
  its last good version until the configuration changes again.
- Subscriptions (§"How the client specifies what resources to return"): `resource_names`
  is the full set each time; `*` subscribes to everything of the type; a type whose
  requests never named anything is a legacy wildcard; once something was named, an
  empty list means no resources. Requested names that do not exist yet are remembered
  and sent when they appear (§"Knowing When a Requested Resource Does Not Exist").
- Responses (§"Grouping Resources into Responses"): Listener and Cluster responses
  hold every subscribed resource (absence deletes); other types only the resources
  that changed or were newly requested. Nothing is sent when nothing changed
  (§"When to send an update").
- Reconnect (§"ACK/NACK and resource type instance version": servers "may decide to
  optimize by not resending resources that the client had already seen"): only for a
  wildcard Listener/Cluster subscription whose first request names the current version
  do we send nothing; named subscriptions are answered, because the client may hold a
  name it never received.
"""

from __future__ import annotations

from collections import OrderedDict

from envoy.service.discovery.v3 import discovery_pb2

from gossamer.contract import xds
from gossamer.errors import RemoteProtocolError

from .ads_stream import AdsStream, StreamEnvironment
from .cache import FULL_STATE_TYPES, WILDCARD, Snapshot, SotwSubscription, sotw_update

REMEMBERED_NONCES = 16


class SotwStream(AdsStream[discovery_pb2.DiscoveryRequest, discovery_pb2.DiscoveryResponse]):
    protocol = "sotw"

    def __init__(self, env: StreamEnvironment, peer: str, identity: str | None = None) -> None:
        super().__init__(env, peer, identity)
        self.subscriptions: dict[str, SotwSubscription] = {}
        self._named: set[str] = set()
        self._latest_nonce: dict[str, str] = {}
        self._sent_versions: dict[str, OrderedDict[str, str]] = {}

    def on_request(self, request: discovery_pb2.DiscoveryRequest) -> None:
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
            if request.response_nonce != self._latest_nonce.get(type_url):
                self.info.stale_nonces += 1
                return
        self._subscribe(request)
        self.wake()

    def _ack_or_nack(self, request: discovery_pb2.DiscoveryRequest) -> None:
        """Record what the client says about a response we sent (even an older one:
        it is still what the client did with that version)."""
        type_url = request.type_url
        version = self._sent_versions.get(type_url, {}).get(request.response_nonce)
        if version is None:
            return
        if request.HasField("error_detail"):
            self.record_nack(type_url, version, request.error_detail.message)
        elif request.response_nonce == self._latest_nonce.get(type_url):
            self.info.record_ack(type_url, request.version_info)
        else:
            self.info.record_ack(type_url, version)

    def _subscribe(self, request: discovery_pb2.DiscoveryRequest) -> None:
        type_url = request.type_url
        sub = self.subscriptions.get(type_url)
        first = sub is None
        if sub is None:
            sub = self.subscriptions[type_url] = SotwSubscription()
        requested = set(request.resource_names)
        if requested:
            self._named.add(type_url)
        wildcard = WILDCARD in requested or type_url not in self._named
        requested.discard(WILDCARD)
        new_names = frozenset(requested)
        if new_names != sub.names or wildcard != sub.wildcard:
            sub.names, sub.wildcard = new_names, wildcard
            if not wildcard:
                sub.sent = {n: v for n, v in sub.sent.items() if n in new_names}
        self.info.record_subscription(type_url, wildcard, len(new_names))
        if (
            first
            and wildcard
            and type_url in FULL_STATE_TYPES
            and request.version_info
            and self.snapshot is not None
            and request.version_info == self.snapshot.get(type_url).version
        ):
            sub.mark_current(self.snapshot.get(type_url))
            self.info.record_ack(type_url, request.version_info)

    def responses(self, snapshot: Snapshot) -> list[discovery_pb2.DiscoveryResponse]:
        out = []
        order = list(xds.PUSH_ORDER) + sorted(set(self.subscriptions) - set(xds.PUSH_ORDER))
        for type_url in order:
            sub = self.subscriptions.get(type_url)
            if sub is None:
                continue
            current = snapshot.get(type_url)
            resources = sotw_update(type_url, current, sub)
            if resources is None:
                continue
            nonce = self.next_nonce()
            self._latest_nonce[type_url] = nonce
            sent = self._sent_versions.setdefault(type_url, OrderedDict())
            sent[nonce] = current.version
            while len(sent) > REMEMBERED_NONCES:
                sent.popitem(last=False)
            self.info.record_sent(type_url, current.version)
            out.append(
                discovery_pb2.DiscoveryResponse(
                    version_info=current.version,
                    resources=[r.body for r in resources],
                    type_url=type_url,
                    nonce=nonce,
                    control_plane={"identifier": self.env.control_plane_id},
                )
            )
        return out
