"""EDS for the sidecar: ClusterLoadAssignment -> endpoint specs (pure).

Endpoints are grouped by locality; each keeps its zone, node (`Locality.sub_zone`),
health (UNKNOWN/HEALTHY/DEGRADED -> healthy, UNHEALTHY/TIMEOUT -> unhealthy, DRAINING ->
draining), weight (unset: 1) and the `tlsMode` of its `envoy.transport_socket_match` metadata (which decides, with
the cluster's transport socket match, whether it is reached over mutual TLS). Locality
weights are not used: the balancer keeps to its own zone while it has healthy
endpoints. Named endpoints and endpoints without an address are refused.

An instance on several networks: its `socket_address` is the one the control plane
verified; its `additional_addresses` are its own unverified claims. The endpoint is
reached at the one on a network this sidecar shares (`connect_address`), keeps the
others as `aliases` and, when it is reached at a claimed one, the verified one as
`primary` (only that one names the cluster for transparent-mode destinations).

Also the small helpers every decoder uses (clusters, listeners, translate):
unpacking an Any with a clear error, durations and Struct values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Interface
from typing import Any

from envoy.config.core.v3 import health_check_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from google.protobuf import any_pb2, duration_pb2, struct_pb2
from google.protobuf.message import DecodeError

from gossamer.contract import xds
from gossamer.contract.vocabulary import Health
from gossamer.errors import ConfigError
from gossamer.proxy.config import Endpoint
from gossamer.proxy.transport.local_networks import connect_address

MAX_WEIGHT = 128


def unpack(packed: any_pb2.Any, message: Any, what: str) -> Any:
    """Unpack an Any into `message`, or a ConfigError naming what was expected (or why
    its bytes do not parse: protobuf raises DecodeError for those)."""
    if not packed.Is(message.DESCRIPTOR):
        raise ConfigError(f"{what}: expected {message.DESCRIPTOR.full_name}, got {packed.type_url}")
    try:
        unpacked = packed.Unpack(message)
    except DecodeError as exc:
        raise ConfigError(f"{what}: {message.DESCRIPTOR.full_name} does not parse: {exc}") from None
    if not unpacked:
        raise ConfigError(f"{what}: expected {message.DESCRIPTOR.full_name}, got {packed.type_url}")
    return message


def enum_name(enum: Any, value: int) -> str:
    """An enum value's name, or its number when the enum has none for it (proto3 enums
    are open: a newer peer, or any bytes, can carry values this version does not name)."""
    try:
        return str(enum.Name(value))
    except ValueError:
        return str(value)


def seconds(value: duration_pb2.Duration) -> float:
    return float(value.seconds) + value.nanos / 1e9


def struct_value(struct: struct_pb2.Struct, key: str) -> Any:
    """A Struct field as a Python value (None when absent)."""
    if key not in struct.fields:
        return None
    value = struct.fields[key]
    kind = value.WhichOneof("kind")
    return getattr(value, kind) if kind else None


HEALTH = {
    health_check_pb2.UNKNOWN: Health.HEALTHY,
    health_check_pb2.HEALTHY: Health.HEALTHY,
    health_check_pb2.DEGRADED: Health.HEALTHY,
    health_check_pb2.UNHEALTHY: Health.UNHEALTHY,
    health_check_pb2.TIMEOUT: Health.UNHEALTHY,
    health_check_pb2.DRAINING: Health.DRAINING,
}


@dataclass(frozen=True)
class EndpointSpec:
    endpoint: Endpoint
    tls_mode: str = ""  # the `tlsMode` metadata value ("" when absent)


# -- endpoints ---------------------------------------------------------------------
def decode_endpoints(
    resources: Sequence[any_pb2.Any], networks: Sequence[IPv4Interface] = ()
) -> dict[str, tuple[EndpointSpec, ...]]:
    """Each cluster's endpoints; `networks` (this sidecar's) pick which address of an
    instance on several networks to connect to."""
    out: dict[str, tuple[EndpointSpec, ...]] = {}
    for packed in resources:
        cla = unpack(packed, endpoint_pb2.ClusterLoadAssignment(), "EDS resource")
        out[cla.cluster_name] = load_assignment(cla, cla.cluster_name, networks)
    return out


def load_assignment(
    cla: endpoint_pb2.ClusterLoadAssignment, name: str, networks: Sequence[IPv4Interface] = ()
) -> tuple[EndpointSpec, ...]:
    seen: set[tuple[str, int]] = set()
    specs = []
    for locality in cla.endpoints:
        zone = locality.locality.zone
        node = locality.locality.sub_zone  # the instance's node (several nodes)
        for lb in locality.lb_endpoints:
            if lb.WhichOneof("host_identifier") != "endpoint":
                raise ConfigError(f"{name}: named endpoints are not supported")
            sock = lb.endpoint.address.socket_address
            if not sock.address or not 0 < sock.port_value < 65536:
                raise ConfigError(
                    f"{name}: endpoint without an address and port "
                    f"({sock.address!r}:{sock.port_value})"
                )
            key = (sock.address, sock.port_value)
            if key in seen:
                continue
            seen.add(key)
            weight = lb.load_balancing_weight.value if lb.HasField("load_balancing_weight") else 1
            meta = lb.metadata.filter_metadata.get(xds.TRANSPORT_SOCKET_MATCH)
            mode = struct_value(meta, xds.TLS_MODE_KEY) if meta is not None else None
            others = [
                extra.address.socket_address.address
                for extra in lb.endpoint.additional_addresses
                if extra.address.socket_address.address
            ]
            address = connect_address(sock.address, others, networks)
            endpoint = Endpoint(
                address=address,
                aliases=tuple(a for a in (sock.address, *others) if a != address),
                primary=sock.address if address != sock.address else "",
                port=sock.port_value,
                zone=zone,
                node=node,
                weight=min(max(weight, 1), MAX_WEIGHT),
                health=HEALTH.get(lb.health_status, Health.UNHEALTHY),
                priority=locality.priority,
            )
            specs.append(EndpointSpec(endpoint, str(mode or "")))
    return tuple(specs)
