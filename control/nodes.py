"""Which NodeGroup a connecting node belongs to.

On an mTLS port the peer's certificate decides: its SPIFFE ID names the service, and a
node that claims another service in its metadata is refused. On the insecure port (no
client certificate) a sidecar names its service in the node metadata, Istio-style:

    node: {id: "...", metadata: {GOSSAMER_SERVICE: catalog, GOSSAMER_NAMESPACE: default}}

and a node without it (a proxyless gRPC client: gRPC's xDS clients send no such
metadata, and name themselves in `user_agent_name`, e.g. "gRPC Go", "gRPC Java") is in
the `proxyless` group, which gets resources every gRPC xDS client accepts. The node's
locality zone and its node (metadata `GOSSAMER_NODE`, the sidecar's `--node`) complete
its group: endpoint priorities follow them, and a node's name decides which instances
it reaches through other nodes' gateways.
"""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2

from gossamer.contract.identity import (
    CONTROL_NAMESPACE,
    DEFAULT_NAMESPACE,
    ServiceKey,
    check_label,
    parse_spiffe_id,
)
from gossamer.contract.xds import NAMESPACE_KEY, NODE_KEY, SERVICE_KEY
from gossamer.errors import AuthorizationDenied, ConfigError, RemoteProtocolError

from .translate import NodeGroup

__all__ = ["NAMESPACE_KEY", "SERVICE_KEY", "claimed_service", "resolve_group"]


def claimed_service(node: base_pb2.Node) -> ServiceKey | None:
    fields = node.metadata.fields
    if SERVICE_KEY not in fields:
        return None
    name = fields[SERVICE_KEY].string_value
    namespace = fields[NAMESPACE_KEY].string_value if NAMESPACE_KEY in fields else DEFAULT_NAMESPACE
    try:
        return ServiceKey(check_label(namespace, NAMESPACE_KEY), check_label(name, SERVICE_KEY))
    except ConfigError as exc:
        raise RemoteProtocolError(f"node metadata: {exc.message}") from None


def claimed_node(node: base_pb2.Node) -> str:
    """The node name in the metadata ("" when none); a malformed one is refused."""
    fields = node.metadata.fields
    if NODE_KEY not in fields or not fields[NODE_KEY].string_value:
        return ""
    try:
        return check_label(fields[NODE_KEY].string_value, NODE_KEY)
    except ConfigError as exc:
        raise RemoteProtocolError(f"node metadata: {exc.message}") from None


def resolve_group(node: base_pb2.Node, identity: str | None, trust_domain: str) -> NodeGroup:
    """The group for a node; `identity` is the peer's SPIFFE ID when mTLS proved one."""
    claimed = claimed_service(node)
    zone = node.locality.zone
    where = claimed_node(node)
    if identity is None:
        if claimed is not None and claimed.namespace == CONTROL_NAMESPACE:
            raise AuthorizationDenied("only a certificate may claim a gossamer-system service")
        return NodeGroup(claimed, zone, where)
    parsed = parse_spiffe_id(identity)
    if parsed is None or parsed[0] != trust_domain:
        raise AuthorizationDenied(f"peer identity {identity} is not a workload of {trust_domain}")
    key = parsed[1]
    if claimed is not None and claimed != key:
        raise AuthorizationDenied(f"peer {identity} may not claim to be service {claimed}")
    return NodeGroup(key, zone, where)
