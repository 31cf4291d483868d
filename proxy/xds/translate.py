"""Envoy xDS resources -> the sidecar's `ProxyConfig` (pure; docs/architecture.md,
"The control loop").

Each resource type is decoded on its own as it arrives (clusters.py: CDS, EDS;
listeners.py: LDS, RDS; here: SDS, the ROOTCA trust bundle and the CRLs in its
validation context's `crl`), raising ConfigError for anything the sidecar
cannot honour, which the xDS client answers with a NACK. `assemble` then joins the
latest accepted piece of every type into one `ProxyConfig`:

- clusters get their endpoints (EDS by `service_name`, or inline for STATIC), each
  endpoint TLS or not by its `tlsMode`; a ring-hash cluster gets the header of the
  hash policy of a route to it;
- routes get the retry budget of their (first) cluster's circuit breakers;
- the inbound listener's ports become app ports, served by the local app on the port
  the command line maps each service port to (`local_app_ports`);
- listeners run in transparent mode, which also serves explicit-mode connections made
  straight to the outbound port: the command line does not say which mode iptables
  set up, and the original destination tells (outbound.py).

`missing(pieces)` says what is still needed before the first configuration can be
applied (clusters, listeners, the routes they name, one endpoint update), so a sidecar
never serves from half a configuration (Envoy's initial warming).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from google.protobuf import any_pb2

from gossamer.certs.crl import load_crls
from gossamer.contract import xds
from gossamer.errors import ConfigError
from gossamer.proxy.config import (
    AppPort,
    Cluster,
    Endpoint,
    InboundConfig,
    LbPolicy,
    ListenerMode,
    Listeners,
    NodeInfo,
    Protocol,
    ProxyConfig,
    RouteTable,
    VirtualHost,
)
from gossamer.proxy.xds.clusters import ClusterSet
from gossamer.proxy.xds.endpoints import EndpointSpec, unpack
from gossamer.proxy.xds.listeners import ListenerSet, RouteSpec

__all__ = [
    "AppPortArg",
    "Pieces",
    "TrustBundle",
    "assemble",
    "decode_secret",
    "decode_trust",
    "local_app_ports",
    "missing",
]


@dataclass(frozen=True)
class AppPortArg:
    """One `--app-port`: the app listens on `port`; `service_port` is the service port
    it serves when that differs (`--app-port 8080:18080`), else None."""

    port: int
    protocol: Protocol = Protocol.HTTP
    service_port: int | None = None


def local_app_ports(service_ports: Sequence[int], args: Sequence[AppPortArg]) -> dict[int, int]:
    """Service port -> the port the app listens on. Explicit `SERVICE:APP` mappings
    first; a lone plain `--app-port` serves a service with a single port whatever its
    number; otherwise a service port is served on the same port number."""
    explicit = {a.service_port: a.port for a in args if a.service_port is not None}
    plain = [a.port for a in args if a.service_port is None]
    if len(service_ports) == 1 and not explicit and len(plain) == 1:
        return {service_ports[0]: plain[0]}
    return {sp: explicit.get(sp, sp) for sp in service_ports}


@dataclass(frozen=True)
class TrustBundle:
    """The ROOTCA secret: trusted roots and the CRLs of their issuers (PEM; b"": none)."""

    bundle: bytes
    crl: bytes = b""


def decode_secret(resources: Sequence[any_pb2.Any]) -> bytes | None:
    """The trust bundle from the `ROOTCA` secret (None when it is not in the update)."""
    trust = decode_trust(resources)
    return None if trust is None else trust.bundle


def decode_trust(resources: Sequence[any_pb2.Any]) -> TrustBundle | None:
    """The `ROOTCA` secret's bundle and CRLs (None when it is not in the update); a
    ConfigError (the NACK) when either is not inline PEM that parses."""
    for packed in resources:
        secret = unpack(packed, secret_pb2.Secret(), "SDS resource")
        if secret.name != xds.ROOT_CA_SECRET:
            continue
        context = secret.validation_context
        bundle = _inline(secret.name, "trusted CA", context.trusted_ca)
        try:
            x509.load_pem_x509_certificates(bundle)
        except (ValueError, x509.InvalidVersion) as exc:  # InvalidVersion is no ValueError
            raise ConfigError(
                f"secret {secret.name}: not a PEM certificate bundle: {exc}"
            ) from None
        crl = b""
        if context.HasField("crl"):
            crl = _inline(secret.name, "CRL", context.crl)
            try:
                load_crls(crl)
            except ConfigError as exc:
                raise ConfigError(f"secret {secret.name}: {exc.message}") from None
        return TrustBundle(bundle, crl)
    return None


def _inline(name: str, what: str, source: Any) -> bytes:
    kind = source.WhichOneof("specifier")
    if kind == "inline_bytes":
        return bytes(source.inline_bytes)
    if kind == "inline_string":
        return str(source.inline_string).encode()
    raise ConfigError(f"secret {name}: the {what} must be inline, not {kind}")


@dataclass(frozen=True)
class Pieces:
    """The latest accepted value of each type (None / empty until one arrived)."""

    clusters: ClusterSet | None = None
    endpoints: Mapping[str, tuple[EndpointSpec, ...]] = field(default_factory=dict)
    endpoints_seen: bool = False
    listeners: ListenerSet | None = None
    routes: Mapping[str, RouteSpec] = field(default_factory=dict)

    def replace(self, **changes: object) -> Pieces:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def missing(pieces: Pieces) -> list[str]:
    """What the first configuration still waits for ([] when it can be applied)."""
    out = []
    if pieces.clusters is None:
        out.append("CDS")
    elif pieces.clusters.eds_names and not pieces.endpoints_seen:
        out.append("EDS")
    if pieces.listeners is None:
        out.append("LDS")
    else:
        out.extend(f"RDS {n}" for n in pieces.listeners.rds_names if n not in pieces.routes)
    return out


def assemble(
    node: NodeInfo,
    pieces: Pieces,
    app_ports: Sequence[AppPortArg] = (),
    versions: Mapping[str, str] | None = None,
) -> ProxyConfig:
    """One ProxyConfig from the pieces (see the module docstring); ConfigError when the
    combination is invalid."""
    cds = pieces.clusters or ClusterSet()
    lds = pieces.listeners or ListenerSet()
    route_spec = lds.inline_routes
    if route_spec is None and lds.route_config:
        route_spec = pieces.routes.get(lds.route_config)
    route_spec = route_spec or RouteSpec(RouteTable(validate_clusters=False))
    clusters: dict[str, Cluster] = {}
    endpoints: dict[str, tuple[Endpoint, ...]] = {}
    for name, spec in cds.outbound.items():
        cluster = spec.cluster
        header = route_spec.hash_headers.get(name)
        if spec.ring_hash and header:
            cluster = dataclasses.replace(cluster, lb_policy=LbPolicy.RING_HASH, hash_header=header)
        clusters[name] = cluster
        members = pieces.endpoints.get(spec.eds_name, ()) if spec.eds_name else spec.inline
        endpoints[name] = tuple(
            dataclasses.replace(
                m.endpoint, tls=spec.tls_mode is None or m.tls_mode == spec.tls_mode
            )
            for m in members
        )
    inbound = InboundConfig()
    if lds.inbound is not None:
        local = local_app_ports([p for p, _ in lds.inbound.ports], app_ports)
        inbound = InboundConfig(
            app_ports=tuple(
                AppPort(
                    port,
                    Protocol.HTTP2
                    if protocol is Protocol.HTTP and port in cds.inbound_h2
                    else protocol,
                    target_port=local.get(port, port),
                )
                for port, protocol in lds.inbound.ports
            ),
            authorization=lds.inbound.authorization,
            stream_timeouts=lds.inbound.stream_timeouts,
        )
    return ProxyConfig(
        node=node,
        listeners=Listeners(
            mode=ListenerMode.TRANSPARENT,
            passthrough=cds.passthrough or route_spec.passthrough,
            stream_timeouts=lds.outbound_timeouts,
        ),
        inbound=inbound,
        routes=_with_budgets(route_spec.table, cds),
        clusters=clusters,
        endpoints=endpoints,
        versions=dict(versions or {}),
    )


def _with_budgets(table: RouteTable, cds: ClusterSet) -> RouteTable:
    """Routes' retry policies with their cluster's retry budget percent."""
    hosts = []
    for vh in table.virtual_hosts:
        routes = []
        for route in vh.routes:
            spec = cds.outbound.get(route.clusters[0].name)
            if route.retry is not None and spec is not None and spec.retry_budget is not None:
                retry = dataclasses.replace(route.retry, budget_percent=spec.retry_budget)
                routes.append(dataclasses.replace(route, retry=retry))
            else:
                routes.append(route)
        hosts.append(VirtualHost(vh.name, vh.domains, tuple(routes)))
    return RouteTable(table.name, tuple(hosts), table.validate_clusters)
