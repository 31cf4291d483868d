"""xDS translation in the sidecar: arbitrary Envoy resources -> the decoders
(proxy/xds/) -> `assemble` -> `Sidecar.apply`; each step ends in a value or a clean
`GossamerError` (the NACK path), never another exception.

Input: a serialized `DiscoveryResponse`. Its resources go to the decoder of their own
type URL (CDS, EDS, LDS, RDS, SDS: the trust bundle and its CRLs, which then go into
TLS contexts as the agent installs them), in the client's subscription order; resources of
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
from gossamer.proxy.transport.tls_contexts import Credentials, build_contexts
from gossamer.proxy.xds.clusters import decode_clusters
from gossamer.proxy.xds.endpoints import decode_endpoints
from gossamer.proxy.xds.listeners import decode_listeners, decode_routes
from gossamer.proxy.xds.translate import Pieces, TrustBundle, assemble, decode_trust, missing

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
    trust = _step("decode_trust", lambda: decode_trust(by_type[xds.SECRET]))
    if trust is not None and trust.crl:  # as the agent installs it: into TLS contexts
        _step("build_contexts", lambda: build_contexts(_credentials(trust)))
    return pieces


_WORKLOAD: list[tuple[bytes, bytes]] = []  # (chain, key) of one leaf, made once


def _credentials(trust: TrustBundle) -> Credentials:
    """A fixed leaf with the decoded bundle and CRLs, as `Agent._on_bundle` makes them."""
    if not _WORKLOAD:
        import tempfile

        from gossamer.certs.ca import CertificateAuthority
        from gossamer.certs.keys import build_csr, generate_key, key_to_pem

        with tempfile.TemporaryDirectory() as tmp:
            ca = CertificateAuthority.init(tmp, TRUST_DOMAIN)
            key = generate_key()
            uri = f"spiffe://{TRUST_DOMAIN}/ns/default/sa/web"
            issued = ca.issue(build_csr(key, uri), uri, 3600 * 24 * 365)
        _WORKLOAD.append((issued.chain_pem, key_to_pem(key)))
    chain, key_pem = _WORKLOAD[0]
    return Credentials(chain, key_pem, trust.bundle, trust.crl)


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
