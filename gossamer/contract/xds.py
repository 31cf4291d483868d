"""xDS names both ends agree on: type URLs, the ADS method, resource and metadata names.

Resource names follow Istio's so that tools recognise them (docs/architecture.md,
"Protocols"): cluster `outbound|<port>||<svc>.<ns>`, inbound cluster `inbound|<port>`,
listeners `outbound` (15001) and `inbound` (15006), route configuration `outbound`,
secret `ROOTCA`. Proxyless gRPC clients ask LDS for the authority of their target (the
control plane's `hostnames` module lists those names). A sidecar names the port it wants
of a peer in the TLS server name (`sni`).
"""

from __future__ import annotations

from gossamer.contract.identity import ServiceKey

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

ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"
ADS_PATH = f"/{ADS_SERVICE}/StreamAggregatedResources"
DELTA_ADS_PATH = f"/{ADS_SERVICE}/DeltaAggregatedResources"

OUTBOUND_LISTENER = "outbound"
INBOUND_LISTENER = "inbound"
OUTBOUND_ROUTE = "outbound"
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
# Node metadata by which a sidecar names its service on the insecure port.
SERVICE_KEY = "GOSSAMER_SERVICE"
NAMESPACE_KEY = "GOSSAMER_NAMESPACE"
# Node metadata naming the node (`--node`) a sidecar or gateway runs on: the control
# plane serves instances of other nodes that have a gateway at that gateway's address.
NODE_KEY = "GOSSAMER_NODE"
# The cluster extension that switches an upstream to HTTP/2. (Load-balancing policies'
# forms, the peak-EWMA marker among them, are in lb_policies.py.)
HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def outbound_cluster(key: ServiceKey, port: int) -> str:
    return f"outbound|{port}||{key.name}.{key.namespace}"


def inbound_cluster(port: int) -> str:
    return f"inbound|{port}"


def sni(trust_domain: str, key: ServiceKey, port: int) -> str:
    """The TLS server name a sidecar sends so the peer's inbound listener knows which of
    the service's ports the connection is for (Istio's form). A node gateway routes a
    connection by it without terminating TLS (`parse_sni`)."""
    return f"outbound_.{port}_._.{key.name}.{key.namespace}.svc.{trust_domain}"


def parse_sni(server_name: str, trust_domain: str) -> tuple[ServiceKey, int] | None:
    """The (service, port) an `sni()` name stands for; None for any other name."""
    prefix, sep, rest = server_name.partition("_._.")
    if not sep or not prefix.startswith("outbound_."):
        return None
    port_text = prefix[len("outbound_.") :]
    suffix = f".svc.{trust_domain}"
    if not port_text.isdigit() or len(port_text) > 5 or not rest.endswith(suffix):
        return None
    name, dot, namespace = rest[: -len(suffix)].partition(".")
    port = int(port_text)
    if not dot or not name or not namespace or "." in namespace or not 0 < port < 65536:
        return None
    return ServiceKey(namespace, name), port
