"""How each load-balancing policy travels in an xDS Cluster: encoded once, decoded once.

The control plane writes a mesh.yaml `lb_policy` into a Cluster with `encode`; the
sidecar reads any Cluster (ours, or another control plane's) with `decode`. The forms
are chosen so that Envoy, gRPC's xDS clients and our sidecar all accept every cluster
(gRPC NACKs an `lb_policy` enum other than ROUND_ROBIN/RING_HASH, and takes the first
entry of `load_balancing_policy` it supports, gRFC A52):

| mesh.yaml      | Cluster                                                              |
|----------------|----------------------------------------------------------------------|
| round_robin    | lb_policy ROUND_ROBIN                                                |
| ring_hash      | lb_policy RING_HASH, XX_HASH ring (routes hash `hash_header`)         |
| least_request  | load_balancing_policy [LeastRequest(2 choices), WrrLocality(RR)]     |
| random         | load_balancing_policy [Random, WrrLocality(RR)]                      |
| ewma           | load_balancing_policy [PEAK_EWMA marker, LeastRequest, WrrLocality]  |

The ewma marker is a standard extension entry that only our sidecar implements: a
`TypedExtensionConfig` named `gossamer.lb.peak_ewma` whose config is an
`xds.type.v3.TypedStruct` with type URL `type.googleapis.com/gossamer.lb.v1.PeakEwma`
and `{decay: "10s"}`; other clients skip it and use the next entry.

Adding a policy: a member of `LbPolicy` (vocabulary.py), its form here (`_ENCODERS`
and what `decode` recognises), and its balancer in the sidecar
(`proxy/upstream/balancer.py`); `tests/unit/contract/test_vocabulary.py` checks all three.
"""

from __future__ import annotations

from collections.abc import Callable

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import extension_pb2
from envoy.extensions.load_balancing_policies.wrr_locality.v3 import wrr_locality_pb2
from google.protobuf import any_pb2, struct_pb2
from google.protobuf.message import DecodeError, Message
from xds.type.v3 import typed_struct_pb2

from gossamer.contract.vocabulary import LbPolicy
from gossamer.errors import ConfigError

PEAK_EWMA_NAME = "gossamer.lb.peak_ewma"
PEAK_EWMA_TYPE_URL = "type.googleapis.com/gossamer.lb.v1.PeakEwma"
PEAK_EWMA_DECAY = "10s"
RING_SIZE = 1024

_PREFIX = "type.googleapis.com/"
_LB = _PREFIX + "envoy.extensions.load_balancing_policies."
# load_balancing_policy entries the sidecar recognises (Maglev is served by its ring hash)
_TYPES = {
    _LB + "round_robin.v3.RoundRobin": LbPolicy.ROUND_ROBIN,
    _LB + "least_request.v3.LeastRequest": LbPolicy.LEAST_REQUEST,
    _LB + "random.v3.Random": LbPolicy.RANDOM,
    _LB + "ring_hash.v3.RingHash": LbPolicy.RING_HASH,
    _LB + "maglev.v3.Maglev": LbPolicy.RING_HASH,
}
_WRR_LOCALITY = _LB + "wrr_locality.v3.WrrLocality"
_TYPED_STRUCTS = (_PREFIX + "xds.type.v3.TypedStruct", _PREFIX + "udpa.type.v1.TypedStruct")
# the legacy `lb_policy` enum
_ENUM = {
    cluster_pb2.Cluster.ROUND_ROBIN: LbPolicy.ROUND_ROBIN,
    cluster_pb2.Cluster.LEAST_REQUEST: LbPolicy.LEAST_REQUEST,
    cluster_pb2.Cluster.RANDOM: LbPolicy.RANDOM,
    cluster_pb2.Cluster.RING_HASH: LbPolicy.RING_HASH,
    cluster_pb2.Cluster.MAGLEV: LbPolicy.RING_HASH,
}


# -- encoding (the control plane) -------------------------------------------------------
def _entry(name: str, config: Message) -> cluster_pb2.LoadBalancingPolicy.Policy:
    packed = any_pb2.Any()
    packed.Pack(config, deterministic=True)
    return cluster_pb2.LoadBalancingPolicy.Policy(
        typed_extension_config=extension_pb2.TypedExtensionConfig(name=name, typed_config=packed)
    )


def _wrr_round_robin() -> cluster_pb2.LoadBalancingPolicy.Policy:
    from envoy.extensions.load_balancing_policies.round_robin.v3 import round_robin_pb2

    rr = _entry("envoy.load_balancing_policies.round_robin", round_robin_pb2.RoundRobin())
    inner = cluster_pb2.LoadBalancingPolicy(policies=[rr])
    return _entry(
        "envoy.load_balancing_policies.wrr_locality",
        wrr_locality_pb2.WrrLocality(endpoint_picking_policy=inner),
    )


def _least_request() -> cluster_pb2.LoadBalancingPolicy.Policy:
    from envoy.extensions.load_balancing_policies.least_request.v3 import least_request_pb2
    from google.protobuf import wrappers_pb2

    config = least_request_pb2.LeastRequest(choice_count=wrappers_pb2.UInt32Value(value=2))
    return _entry("envoy.load_balancing_policies.least_request", config)


def _round_robin(cluster: cluster_pb2.Cluster) -> None:
    cluster.lb_policy = cluster_pb2.Cluster.ROUND_ROBIN


def _ring_hash(cluster: cluster_pb2.Cluster) -> None:
    cluster.lb_policy = cluster_pb2.Cluster.RING_HASH
    cluster.ring_hash_lb_config.hash_function = cluster_pb2.Cluster.RingHashLbConfig.XX_HASH
    cluster.ring_hash_lb_config.minimum_ring_size.value = RING_SIZE


def _least_request_policy(cluster: cluster_pb2.Cluster) -> None:
    cluster.load_balancing_policy.policies.extend([_least_request(), _wrr_round_robin()])


def _random(cluster: cluster_pb2.Cluster) -> None:
    from envoy.extensions.load_balancing_policies.random.v3 import random_pb2

    entry = _entry("envoy.load_balancing_policies.random", random_pb2.Random())
    cluster.load_balancing_policy.policies.extend([entry, _wrr_round_robin()])


def _peak_ewma(cluster: cluster_pb2.Cluster) -> None:
    decay = struct_pb2.Struct()
    decay.update({"decay": PEAK_EWMA_DECAY})
    marker = typed_struct_pb2.TypedStruct(type_url=PEAK_EWMA_TYPE_URL, value=decay)
    cluster.load_balancing_policy.policies.extend(
        [_entry(PEAK_EWMA_NAME, marker), _least_request(), _wrr_round_robin()]
    )


_ENCODERS: dict[LbPolicy, Callable[[cluster_pb2.Cluster], None]] = {
    LbPolicy.ROUND_ROBIN: _round_robin,
    LbPolicy.RING_HASH: _ring_hash,
    LbPolicy.LEAST_REQUEST: _least_request_policy,
    LbPolicy.RANDOM: _random,
    LbPolicy.EWMA: _peak_ewma,
}


def encode(cluster: cluster_pb2.Cluster, policy: LbPolicy) -> None:
    """Write `policy` into `cluster` in the form every client accepts."""
    _ENCODERS[policy](cluster)


# -- decoding (the sidecar) -------------------------------------------------------------
def decode(cluster: cluster_pb2.Cluster) -> LbPolicy:
    """The policy a Cluster asks for: the first supported `load_balancing_policy` entry,
    else the `lb_policy` enum; a ConfigError when the sidecar implements none of them."""
    if cluster.HasField("load_balancing_policy"):
        seen: list[str] = []
        found = _first_supported(cluster.load_balancing_policy, seen)
        if found is None:
            raise ConfigError(
                f"cluster {cluster.name}: no supported load-balancing policy among "
                + (", ".join(seen) or "none"),
                hint="the sidecar implements "
                + ", ".join(p.value for p in LbPolicy).replace("_", " "),
            )
        return found
    policy = _ENUM.get(cluster.lb_policy)
    if policy is None:
        try:
            enum_name = cluster_pb2.Cluster.LbPolicy.Name(cluster.lb_policy)
        except ValueError:  # (open enum: a value this version does not name)
            enum_name = str(cluster.lb_policy)
        raise ConfigError(f"cluster {cluster.name}: lb_policy {enum_name} is not supported")
    return policy


def _unpack(typed: any_pb2.Any, message: Message) -> bool:
    """`typed.Unpack(message)`, with bytes that do not parse as a ConfigError (protobuf
    raises DecodeError for them)."""
    try:
        return typed.Unpack(message)
    except DecodeError as exc:
        raise ConfigError(f"{typed.type_url} does not parse: {exc}") from None


def _first_supported(policy: cluster_pb2.LoadBalancingPolicy, seen: list[str]) -> LbPolicy | None:
    for entry in policy.policies:
        typed = entry.typed_extension_config.typed_config
        seen.append(entry.typed_extension_config.name or typed.type_url)
        if typed.type_url in _TYPES:
            return _TYPES[typed.type_url]
        if typed.type_url in _TYPED_STRUCTS:
            marker = typed_struct_pb2.TypedStruct()
            if _unpack(typed, marker) and marker.type_url == PEAK_EWMA_TYPE_URL:
                return LbPolicy.EWMA
        elif typed.type_url == _WRR_LOCALITY:
            inner = wrr_locality_pb2.WrrLocality()
            if not _unpack(typed, inner):
                raise ConfigError(f"wrr_locality: cannot decode {typed.type_url}")
            found = _first_supported(inner.endpoint_picking_policy, seen)
            if found is not None:
                return found
    return None
