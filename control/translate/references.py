"""What a resource refers to, for the snapshot consistency check (go-control-plane's
GetResourceReferences): EDS names of clusters, RDS names of listeners, and secrets
expected over ADS by TLS contexts."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from google.protobuf import any_pb2

from .listeners import HCM
from .peer_tls import referenced_ads_secrets


def cluster_eds_name(cluster: cluster_pb2.Cluster) -> str | None:
    """The ClusterLoadAssignment an EDS cluster needs (service_name, else its name)."""
    if cluster.type != cluster_pb2.Cluster.EDS:
        return None
    name: str = cluster.eds_cluster_config.service_name or cluster.name
    return name


def cluster_secrets(cluster: cluster_pb2.Cluster) -> set[str]:
    sockets = [m.transport_socket for m in cluster.transport_socket_matches]
    if cluster.HasField("transport_socket"):
        sockets.append(cluster.transport_socket)
    found: set[str] = set()
    for socket in sockets:
        context = tls_pb2.UpstreamTlsContext()
        if socket.typed_config.Is(context.DESCRIPTOR) and socket.typed_config.Unpack(context):
            found |= referenced_ads_secrets(context.common_tls_context)
    return found


def listener_routes(listener: listener_pb2.Listener) -> set[str]:
    """RDS names the listener's HttpConnectionManagers fetch over ADS."""
    packed: list[any_pb2.Any] = []
    if listener.HasField("api_listener"):
        packed.append(listener.api_listener.api_listener)
    for chain in listener.filter_chains:
        packed.extend(f.typed_config for f in chain.filters if f.name == HCM)
    found: set[str] = set()
    for item in packed:
        manager = hcm_pb2.HttpConnectionManager()
        if item.Unpack(manager) and manager.HasField("rds"):
            found.add(manager.rds.route_config_name)
    return found


def listener_secrets(listener: listener_pb2.Listener) -> set[str]:
    found: set[str] = set()
    for chain in listener.filter_chains:
        if chain.HasField("transport_socket"):
            context = tls_pb2.DownstreamTlsContext()
            typed = chain.transport_socket.typed_config
            if typed.Is(context.DESCRIPTOR) and typed.Unpack(context):
                found |= referenced_ads_secrets(context.common_tls_context)
    return found
