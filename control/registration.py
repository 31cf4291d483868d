"""The registration stream: a sidecar's instance lives in the registry while it is open.

The first message describes the instance; the service and namespace come from the
caller's verified certificate, never from the message (a message naming another service
is refused), so a sidecar can only register endpoints of its own service. The endpoint is
written under a lease that the stream keeps alive; when the stream ends (the sidecar
stops, crashes, or loses its connection) the registration is closed, and if this
control-plane replica dies instead, the lease expires and the endpoint leaves the
registry within the lease TTL. Later messages report health changes (`draining` when the
sidecar shuts down).

Addresses (issue 17, finding 10). The primary `address` is checked against the
connection (control/addresses.py): the peer address the control plane sees, a loopback
address for a loopback peer, or an address the caller's verified leaf carries as a SAN
(a join token made with `--allow-address`); anything else is refused with
PERMISSION_DENIED, logged and counted (`gossamer_control_registrations_refused_total`).
Only that verified address is ever used by the control plane itself: it is what the
observability scraper connects to and what `/v1/http_sd` publishes.

`other_addresses` (a container on several Compose networks: its addresses on the
networks it does not share with the control plane) cannot be checked: the control plane
has no way to see them, and Docker assigns them at start, so no token could list them
in advance. They are kept, minus loopback, unspecified, multicast and link-local
addresses and the primary, and travel only in EDS (`additional_addresses`) to the
sidecars that may call this service, which treat them as the instance's claims. There
the harm a false one can do stays with this service and its own callers: a calling
sidecar on that network connects to it instead of the primary, and every mesh
connection checks the callee's SPIFFE ID over mutual TLS, so a host there that is not
this service fails the handshake (its callers get errors, as they would from a broken
instance). In transparent mode a claimed address never takes over one that any
endpoint registered as its verified primary, and a caller's connection to an address
only claimed goes to that very address, which must present this service's identity
(`proxy/routing/router.py` `destination_index`, `proxy/upstream/pinned.py`): a claim
of another instance's or a server's address ends in a failed handshake there, never
at this service. What remains: when two services claim the same address on the same
service port, the first claim (in cluster order) is the identity expected there, so a
false claim can make a real other address of another service fail for callers in
transparent mode (no traffic reaches the claimant). The control plane never scrapes
nor publishes them.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

import grpc

from gossamer.contract import mesh_pb2
from gossamer.contract.identity import ServiceKey
from gossamer.contract.vocabulary import Health
from gossamer.control.addresses import AddressRefused, LeafAddresses, check_address
from gossamer.control.peer import peer_address, peer_certificate, require_peer
from gossamer.discovery.model import Endpoint
from gossamer.errors import GossamerError

log = logging.getLogger("gossamer.control.registration")

DEFAULT_LEASE_TTL = 10.0


class Registration(Protocol):
    async def set_health(self, health: Health) -> object: ...

    async def close(self, *, deregister: bool = False) -> None: ...


class Registrar(Protocol):
    """What this service needs from the registry (gossamer.discovery.registry.Registry)."""

    async def register(
        self, endpoint: Endpoint, ttl: float, *, takeover: bool = False
    ) -> Registration: ...


def _usable_other(address: str) -> bool:
    """An address another network's peers could reach the instance at."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return True  # not an IP: the Endpoint refuses it with a clear error
    return not (ip.is_loopback or ip.is_unspecified or ip.is_multicast or ip.is_link_local)


def _other_addresses(address: str, others: Sequence[str]) -> tuple[str, ...]:
    """The instance's other addresses, without its primary one, duplicates and addresses
    no peer could use; none when it is reached on loopback (then it is local to whoever
    calls it)."""
    try:
        if ipaddress.ip_address(address).is_loopback:
            return ()
    except ValueError:
        pass  # a host name: keep what the sidecar says
    return tuple(dict.fromkeys(a for a in others if a != address and _usable_other(a)))


def endpoint_from_instance(
    instance: mesh_pb2.Instance, key: ServiceKey, fallback_address: str | None
) -> Endpoint:
    """Build the registry endpoint; raises ConfigError naming a bad field."""
    address = instance.address or fallback_address or ""
    return Endpoint(
        service=key,
        instance_id=instance.instance_id,
        address=address,
        other_addresses=_other_addresses(address, instance.other_addresses),
        port=instance.port,
        service_ports=tuple(instance.service_ports),
        zone=instance.zone,
        node=instance.node,
        labels=tuple(sorted(instance.labels.items())),
        weight=instance.weight or 1,
        health=Health(instance.health or "healthy"),
        owner="sidecar",
        mtls=True,
        admin_port=instance.admin_port or None,
        metrics_port=instance.metrics_port or None,
    )


class RegistrationService:
    """Implements gossamer.mesh.v1.Registration/Register."""

    def __init__(
        self, registry: Registrar, trust_domain: str, *, lease_ttl: float = DEFAULT_LEASE_TTL
    ) -> None:
        self._registry = registry
        self._trust_domain = trust_domain
        self._ttl = lease_ttl
        self.refused: dict[str, int] = {}  # registrations refused, by reason (metrics)

    async def register(
        self,
        requests: AsyncIterator[mesh_pb2.RegisterRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[mesh_pb2.RegisterResponse]:
        peer = await require_peer(context, self._trust_domain, "registration")
        first = await anext(aiter(requests), None)
        if first is None or first.WhichOneof("kind") != "instance":
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "the first message must describe the instance"
            )
            return
        instance = first.instance
        key = ServiceKey(peer.namespace, peer.service)
        if (instance.service and instance.service != peer.service) or (
            instance.namespace and instance.namespace != peer.namespace
        ):
            log.warning(
                "registration for another service refused",
                extra={
                    "fields": {
                        "peer": peer.uri,
                        "asked": f"{instance.service}.{instance.namespace}",
                    }
                },
            )
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"{peer.uri} may only register endpoints of {peer.service}.{peer.namespace}",
            )
            return
        peer_ip = peer_address(context)
        try:
            address = check_address(
                instance.address,
                peer_ip,
                LeafAddresses.of(peer_certificate(context)),
                identity=peer.uri,
            )
        except AddressRefused as exc:
            self.refused[exc.reason] = self.refused.get(exc.reason, 0) + 1
            log.warning(
                "registration with a foreign address refused",
                extra={
                    "fields": {
                        "peer": peer.uri,
                        "peer_address": peer_ip,
                        "asked": instance.address,
                        "reason": exc.reason,
                    }
                },
            )
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"{exc.message}; {exc.hint}" if exc.hint else exc.message,
            )
            return
        checked = mesh_pb2.Instance()
        checked.CopyFrom(instance)
        checked.address = address
        try:
            endpoint = endpoint_from_instance(checked, key, address)
            # takeover: the same instance reconnecting (to this or another replica)
            # before its previous lease ended replaces that lease at once
            registration = await self._registry.register(endpoint, self._ttl, takeover=True)
        except GossamerError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, exc.message)
            return
        log.info(
            "instance registered",
            extra={"fields": {"service": str(key), "instance": endpoint.instance_id}},
        )
        ended_by_sidecar = False  # it closed its side: it is leaving, not moving
        try:
            yield mesh_pb2.RegisterResponse(status="registered")
            async for message in requests:
                if message.WhichOneof("kind") != "health":
                    continue
                try:
                    health = Health(message.health)
                except ValueError:
                    yield mesh_pb2.RegisterResponse(
                        status="rejected", message=f"unknown health {message.health!r}"
                    )
                    continue
                await registration.set_health(health)
                yield mesh_pb2.RegisterResponse(status="updated", message=health.value)
            ended_by_sidecar = True
        finally:
            await registration.close(deregister=ended_by_sidecar)
            log.info(
                "instance deregistered",
                extra={"fields": {"service": str(key), "instance": endpoint.instance_id}},
            )
