"""Names shared by the control plane and the sidecar: type URLs, resource names, domains.

Resource names follow Istio's so that tools recognise them (DESIGN.md section 3):
cluster `outbound|<port>||<svc>.<ns>`, inbound cluster `inbound|<port>`, listeners
`outbound` (15001) and `inbound` (15006), route configuration `outbound`, secret
`ROOTCA`. Proxyless gRPC clients ask LDS for the authority of their target, so each
service also gets API listeners `svc`, `svc:port`, `svc.ns` and `svc.ns:port`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gossamer.discovery.model import Service, ServiceKey, ServicePort

_PREFIX = "type.googleapis.com/"
CLUSTER = _PREFIX + "envoy.config.cluster.v3.Cluster"
ENDPOINT = _PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER = _PREFIX + "envoy.config.listener.v3.Listener"
ROUTE = _PREFIX + "envoy.config.route.v3.RouteConfiguration"
SECRET = _PREFIX + "envoy.extensions.transport_sockets.tls.v3.Secret"
# Make before break (xds_protocol.rst, "Eventual consistency considerations"):
# clusters, then their endpoints, then listeners, then the routes they use.
PUSH_ORDER = (CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET)
SHORT_NAMES = {CLUSTER: "CDS", ENDPOINT: "EDS", LISTENER: "LDS", ROUTE: "RDS", SECRET: "SDS"}

OUTBOUND_LISTENER = "outbound"
INBOUND_LISTENER = "inbound"
OUTBOUND_ROUTE = "outbound"
OUTBOUND_PORT = 15001
INBOUND_PORT = 15006
ROOT_CA_SECRET = "ROOTCA"
# The sidecar's own certificate and key: made and certified locally (CSR), never sent
# over xDS. TLS contexts refer to it by this name without an SDS config source, which
# in Envoy's terms means "a secret from the local bootstrap".
WORKLOAD_SECRET = "default"
PASSTHROUGH_CLUSTER = "PassthroughCluster"
TLS_MODE_KEY = "tlsMode"
TLS_MODE_MTLS = "istio"
TRANSPORT_SOCKET_MATCH = "envoy.transport_socket_match"
GOSSAMER_METADATA = "gossamer"
HTTP_PROTOCOLS = ("http", "http2", "grpc")
# Sidecars verify the control plane's certificate against this name, whatever address
# they reached it by (the pin or the trust bundle is what establishes trust).
CONTROL_TLS_NAME = "gossamer-control"
# Node metadata by which a sidecar names its service on the insecure port (nodes.py).
SERVICE_KEY = "GOSSAMER_SERVICE"
NAMESPACE_KEY = "GOSSAMER_NAMESPACE"
# The load-balancing marker only our sidecar implements (clusters.py), and the cluster
# extension that switches an upstream to HTTP/2.
PEAK_EWMA_NAME = "gossamer.lb.peak_ewma"
PEAK_EWMA_TYPE_URL = "type.googleapis.com/gossamer.lb.v1.PeakEwma"
HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def outbound_cluster(key: ServiceKey, port: int) -> str:
    return f"outbound|{port}||{key.name}.{key.namespace}"


def inbound_cluster(port: int) -> str:
    return f"inbound|{port}"


def spiffe_id(trust_domain: str, key: ServiceKey) -> str:
    return f"spiffe://{trust_domain}/ns/{key.namespace}/sa/{key.name}"


def parse_spiffe_id(value: str) -> tuple[str, ServiceKey] | None:
    """`spiffe://td/ns/N/sa/S` -> (td, ServiceKey(N, S)); None for anything else."""
    if not value.startswith("spiffe://"):
        return None
    td, _, path = value[len("spiffe://") :].partition("/")
    parts = path.split("/")
    if len(parts) != 4 or parts[0] != "ns" or parts[2] != "sa" or not td:
        return None
    return td, ServiceKey(parts[1], parts[3])


def sni(trust_domain: str, key: ServiceKey, port: int) -> str:
    """The TLS server name a sidecar sends so the peer's inbound listener knows which of
    the service's ports the connection is for (Istio's form)."""
    return f"outbound_.{port}_._.{key.name}.{key.namespace}.svc.{trust_domain}"


def http_ports(service: Service) -> list[ServicePort]:
    return [p for p in service.ports if p.protocol in HTTP_PROTOCOLS]


def primary_port(service: Service) -> ServicePort | None:
    """The port a request without an explicit port goes to: the first HTTP-family port."""
    ports = http_ports(service)
    return ports[0] if ports else None


def bare_owners(keys: Iterable[ServiceKey], caller_namespace: str) -> dict[str, ServiceKey]:
    """Which service a bare name (`catalog`) means for a caller: the one in the caller's
    namespace, else the only service of that name in the mesh (ambiguous names: none)."""
    by_name: dict[str, list[ServiceKey]] = {}
    for key in keys:
        by_name.setdefault(key.name, []).append(key)
    owners: dict[str, ServiceKey] = {}
    for name, candidates in by_name.items():
        local = [k for k in candidates if k.namespace == caller_namespace]
        if local:
            owners[name] = local[0]
        elif len(candidates) == 1:
            owners[name] = candidates[0]
    return owners


@dataclass(frozen=True)
class HostNames:
    """The host names of one service port, with and without the port."""

    with_port: tuple[str, ...]
    without_port: tuple[str, ...]

    def all(self) -> list[str]:
        return list(self.with_port + self.without_port)


def host_names(service: Service, port: ServicePort, trust_domain: str, *, bare: bool) -> HostNames:
    """`svc.ns`, `svc.ns.svc.<trust domain>` (and `svc` when `bare`), each with `:port`;
    the names without a port only for the service's primary port."""
    key = service.key
    names = [f"{key.name}.{key.namespace}", f"{key.name}.{key.namespace}.svc.{trust_domain}"]
    if bare:
        names.insert(0, key.name)
    with_port = tuple(f"{n}:{port.port}" for n in names)
    primary = primary_port(service)
    without = tuple(names) if primary is not None and primary.port == port.port else ()
    return HostNames(with_port, without)


def api_listener_names(service: Service, port: ServicePort, *, bare: bool) -> list[str]:
    """LDS names a proxyless gRPC client may ask for this port (its target's authority)."""
    key = service.key
    qualified = f"{key.name}.{key.namespace}"
    names = [f"{qualified}:{port.port}"]
    if bare:
        names.insert(0, f"{key.name}:{port.port}")
    primary = primary_port(service)
    if primary is not None and primary.port == port.port:
        names.append(qualified)
        if bare:
            names.append(key.name)
    return names
