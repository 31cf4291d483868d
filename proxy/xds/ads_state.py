"""The sidecar's ADS subscription state machine (state of the world), without I/O.

Theory of operation (envoyproxy/envoy docs/root/api-docs/xds_protocol.rst, "ACK/NACK and
resource type instance version", "Resource warming", "Aggregated Discovery Service"):

- One stream carries every type. Each type has a subscription: the resource names (or
  wildcard for LDS and CDS), the version last *accepted*, and the nonce last *received*.
- Every response is answered by a request of the same type carrying the response's
  nonce. ACK: version_info = the response's version. NACK: version_info = the version
  still in use (the last accepted), plus error_detail; the client keeps its last good
  configuration.
- Clusters and listeners decide which EDS and RDS names are needed: after accepting CDS
  (or LDS), the EDS (or RDS) subscription is updated to exactly the names they reference,
  sent with the last EDS (RDS) version and nonce, so the server can answer at once.
- The client subscribes in the order CDS, EDS, LDS, RDS, SDS, as Envoy does (clusters
  warm before listeners refer to them).
- On reconnect, the nonce is forgotten (nonces are per stream) but the accepted versions
  and names are kept and sent again, so a server whose content has not changed can send
  nothing new; the configuration in use stays until a replacement is accepted.

`decode` is supplied by the caller per type: it turns the resources of a response into
the typed value to apply, or raises to NACK. `AdsState` records what was applied and
returns the requests to send; the I/O wrapper sends them on the gRPC stream.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from envoy.service.discovery.v3 import discovery_pb2
from google.rpc import status_pb2

from gossamer.contract.xds import CLUSTER, ENDPOINT, LISTENER, PUSH_ORDER, ROUTE, SECRET

TYPE_PREFIX = "type.googleapis.com/"
ORDER = PUSH_ORDER
WILDCARD_TYPES = frozenset({CLUSTER, LISTENER})
GRPC_INVALID_ARGUMENT = 3


@dataclass
class Subscription:
    type_url: str
    names: tuple[str, ...] = ()
    wildcard: bool = False
    accepted_version: str = ""
    last_nonce: str = ""
    applied: Any = None
    last_error: str | None = None
    acks: int = 0
    nacks: int = 0


@dataclass(frozen=True)
class Decoded:
    """What a decoder returns: the value to apply, and names of dependent resources."""

    value: Any
    references: tuple[str, ...] = ()  # EDS names for CDS, RDS names for LDS


Decoder = Callable[[Sequence[Any]], Decoded]
DEPENDENT = {CLUSTER: ENDPOINT, LISTENER: ROUTE}


@dataclass
class AdsState:
    node: Any  # envoy.config.core.v3.Node
    decoders: dict[str, Decoder]
    secret_names: tuple[str, ...] = ("ROOTCA",)
    subs: dict[str, Subscription] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for type_url in ORDER:
            if type_url not in self.subs:
                wildcard = type_url in WILDCARD_TYPES
                names = self.secret_names if type_url == SECRET else ()
                self.subs[type_url] = Subscription(type_url, names, wildcard)

    def _request(self, sub: Subscription, *, error: str | None = None) -> Any:
        request = discovery_pb2.DiscoveryRequest(
            version_info=sub.accepted_version,
            node=self.node,
            resource_names=list(sub.names),
            type_url=sub.type_url,
            response_nonce=sub.last_nonce,
        )
        if error is not None:
            request.error_detail.CopyFrom(
                status_pb2.Status(code=GRPC_INVALID_ARGUMENT, message=error)
            )
        return request

    def initial_requests(self) -> list[Any]:
        """The requests that open (or reopen) a stream, in CDS, EDS, LDS, RDS, SDS order."""
        requests = []
        for type_url in ORDER:
            sub = self.subs[type_url]
            sub.last_nonce = ""
            if sub.wildcard or sub.names:
                requests.append(self._request(sub))
        return requests

    def handle(self, response: Any) -> list[Any]:
        """Apply one DiscoveryResponse; returns the requests to send (ACK/NACK first)."""
        sub = self.subs.get(response.type_url)
        if sub is None:
            return []  # a type we never asked for: ignore it
        sub.last_nonce = response.nonce
        try:
            decoded = self.decoders[response.type_url](list(response.resources))
        except Exception as exc:  # any failure to understand the update is a NACK
            sub.nacks += 1
            sub.last_error = f"{type(exc).__name__}: {exc}"
            return [self._request(sub, error=sub.last_error)]
        sub.applied = decoded.value
        sub.accepted_version = response.version_info
        sub.last_error = None
        sub.acks += 1
        out = [self._request(sub)]
        dependent_type = DEPENDENT.get(response.type_url)
        if dependent_type is not None:
            dep = self.subs[dependent_type]
            wanted = tuple(sorted(set(decoded.references)))
            if wanted != dep.names:
                dep.names = wanted
                out.append(self._request(dep))
        return out

    def versions(self) -> dict[str, str]:
        return {t.removeprefix(TYPE_PREFIX): s.accepted_version for t, s in self.subs.items()}
