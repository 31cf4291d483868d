"""xDS translation in the sidecar: arbitrary Envoy resources -> the decoders
(proxy/xds/) -> `assemble` -> `Sidecar.apply`; each step ends in a value or a clean
`GossamerError` (the NACK path), never another exception.

Input: a serialized `DiscoveryResponse`. Its resources go to the decoder of their own
type URL (CDS, EDS, LDS, RDS, SDS: the trust bundle and its CRLs), in the client's subscription order; resources of
any other type go to the CDS decoder (which must refuse them cleanly). Each type that
decodes is a piece, as the xDS client keeps it; when the pieces make a configuration
(`missing` is empty) it is assembled and applied to a fresh sidecar. Seeds are the
control plane's own output (`fuzz/make_corpus.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf.message import DecodeError

from fuzz.harness import FuzzBug, no_logged_errors
from gossamer.contract import xds
from gossamer.errors import GossamerError
from gossamer.proxy.config import NodeInfo
from gossamer.proxy.sidecar import Sidecar, SidecarOptions
from gossamer.proxy.xds.clusters import decode_clusters
from gossamer.proxy.xds.endpoints import decode_endpoints
from gossamer.proxy.xds.listeners import decode_listeners, decode_routes
from gossamer.proxy.xds.translate import Pieces, assemble, decode_trust, missing

TRUST_DOMAIN = "gossamer.local"
NODE = NodeInfo("web", "default", trust_domain=TRUST_DOMAIN)
TYPES = (xds.CLUSTER, xds.ENDPOINT, xds.LISTENER, xds.ROUTE, xds.SECRET)


def _step(what: str, call: Callable[[], Any]) -> Any:
    """`call()`, or None when it refused cleanly (a NACK); any other exception is a bug."""
    try:
        return call()
    except GossamerError:
        return None
    except Exception as exc:
        raise FuzzBug(f"{what} raised {type(exc).__name__}: {exc}") from exc


def decode_all(resources: Sequence[Any]) -> Pieces:
    """Each type's resources through its decoder, kept as the xDS client keeps them."""
    by_type: dict[str, list[Any]] = {t: [] for t in TYPES}
    for packed in resources:
        by_type.get(packed.type_url, by_type[xds.CLUSTER]).append(packed)
    pieces = Pieces()
    cds = _step("decode_clusters", lambda: decode_clusters(by_type[xds.CLUSTER]))
    if cds is not None:
        pieces = pieces.replace(clusters=cds)
    eds = _step("decode_endpoints", lambda: decode_endpoints(by_type[xds.ENDPOINT]))
    if eds is not None:
        pieces = pieces.replace(endpoints=eds, endpoints_seen=True)
    lds = _step("decode_listeners", lambda: decode_listeners(by_type[xds.LISTENER], TRUST_DOMAIN))
    if lds is not None:
        pieces = pieces.replace(listeners=lds)
    rds = _step("decode_routes", lambda: decode_routes(by_type[xds.ROUTE]))
    if rds is not None:
        pieces = pieces.replace(routes=rds)
    _step("decode_trust", lambda: decode_trust(by_type[xds.SECRET]))
    return pieces


def test_one_input(data: bytes) -> None:
    response = discovery_pb2.DiscoveryResponse()
    try:
        response.ParseFromString(data)
    except DecodeError:
        return
    with no_logged_errors():
        pieces = decode_all(response.resources)
        if missing(pieces):
            return
        config = _step("assemble", lambda: assemble(NODE, pieces))
        if config is None:
            return
        sidecar = Sidecar(SidecarOptions(node=NODE, telemetry=False))
        _step("Sidecar.apply", lambda: sidecar.apply(config))
