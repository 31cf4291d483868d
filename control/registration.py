"""The registration stream: a sidecar's instance lives in the registry while it is open.

The first message describes the instance; the service and namespace come from the
caller's verified certificate, never from the message (a message naming another service
is refused), so a sidecar can only register endpoints of its own service. The endpoint is
written under a lease that the stream keeps alive; when the stream ends (the sidecar
stops, crashes, or loses its connection) the registration is closed, and if this
control-plane replica dies instead, the lease expires and the endpoint leaves the
registry within the lease TTL. Later messages report health changes (`draining` when the
sidecar shuts down).
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
from gossamer.control.peer import peer_address, peer_identity
from gossamer.discovery.model import Endpoint
from gossamer.errors import GossamerError

log = logging.getLogger("gossamer.control.registration")

DEFAULT_LEASE_TTL = 10.0


class Registration(Protocol):
    async def set_health(self, health: Health) -> object: ...

    async def close(self) -> None: ...


class Registrar(Protocol):
    """What this service needs from the registry (gossamer.discovery.registry.Registry)."""

    async def register(
        self, endpoint: Endpoint, ttl: float, *, takeover: bool = False
    ) -> Registration: ...


def _other_addresses(address: str, others: Sequence[str]) -> tuple[str, ...]:
    """The instance's other addresses, without its primary one and duplicates; none when
    it is reached on loopback (then it is local to whoever calls it)."""
    try:
        if ipaddress.ip_address(address).is_loopback:
            return ()
    except ValueError:
        pass  # a host name: keep what the sidecar says
    return tuple(dict.fromkeys(a for a in others if a != address))


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

    async def register(
        self,
        requests: AsyncIterator[mesh_pb2.RegisterRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[mesh_pb2.RegisterResponse]:
        peer = peer_identity(context, self._trust_domain)
        if peer is None:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED, "registration needs a mesh client certificate"
            )
            return
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
        try:
            endpoint = endpoint_from_instance(instance, key, peer_address(context))
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
        finally:
            await registration.close()
            log.info(
                "instance deregistered",
                extra={"fields": {"service": str(key), "instance": endpoint.instance_id}},
            )
