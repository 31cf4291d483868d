"""TLS pieces of the mesh: the ROOTCA secret and the upstream/downstream TLS contexts.

Peers authenticate each other by SPIFFE ID: a client sidecar checks that the server's
certificate carries the URI SAN of the service it called; a server sidecar requires a
client certificate from the mesh (URI SAN under `spiffe://<trust domain>/`) and leaves
finer authorization to the RBAC filter. Trust anchors come from the `ROOTCA` secret
over ADS, so the trust bundle can rotate without touching listeners or clusters.

The ROOTCA secret also carries the mesh's revocation list: one CRL per issuing
intermediate, concatenated PEM (`crl`, with `only_verify_leaf_cert_crl`: only the peer's
leaf is looked up, as the sidecar's OpenSSL `VERIFY_CRL_CHECK_LEAF` does). It is always
present when the control plane runs the CA, empty CRLs when nothing is revoked, so a
revocation changes only the secret's content: the sidecars get it through SDS within
a second, without touching listeners or clusters.
"""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.raw_buffer.v3 import raw_buffer_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import wrappers_pb2

from gossamer.contract import xds

from .common import ads_source, pack

TLS_SOCKET = "envoy.transport_sockets.tls"
RAW_SOCKET = "envoy.transport_sockets.raw_buffer"


def root_ca_secret(trust_bundle_pem: bytes, crl_pem: bytes | None = None) -> secret_pb2.Secret:
    context = common_pb2.CertificateValidationContext(
        trusted_ca=base_pb2.DataSource(inline_bytes=trust_bundle_pem)
    )
    if crl_pem:
        context.crl.inline_bytes = crl_pem
        context.only_verify_leaf_cert_crl = True
    return secret_pb2.Secret(name=xds.ROOT_CA_SECRET, validation_context=context)


def _common_context(san: string_pb2.StringMatcher) -> tls_pb2.CommonTlsContext:
    return tls_pb2.CommonTlsContext(
        tls_params=common_pb2.TlsParameters(
            tls_minimum_protocol_version=common_pb2.TlsParameters.TLSv1_2
        ),
        # No sds_config: the sidecar's own key and certificate, from its bootstrap.
        tls_certificate_sds_secret_configs=[secret_pb2.SdsSecretConfig(name=xds.WORKLOAD_SECRET)],
        combined_validation_context=tls_pb2.CommonTlsContext.CombinedCertificateValidationContext(
            default_validation_context=common_pb2.CertificateValidationContext(
                match_typed_subject_alt_names=[
                    common_pb2.SubjectAltNameMatcher(
                        san_type=common_pb2.SubjectAltNameMatcher.URI, matcher=san
                    )
                ]
            ),
            validation_context_sds_secret_config=secret_pb2.SdsSecretConfig(
                name=xds.ROOT_CA_SECRET, sds_config=ads_source()
            ),
        ),
    )


def upstream_tls(server_spiffe_id: str, server_name: str) -> tls_pb2.UpstreamTlsContext:
    """Client side: present our certificate, accept only the callee's SPIFFE ID."""
    return tls_pb2.UpstreamTlsContext(
        common_tls_context=_common_context(string_pb2.StringMatcher(exact=server_spiffe_id)),
        sni=server_name,
    )


def downstream_tls(trust_domain: str) -> tls_pb2.DownstreamTlsContext:
    """Server side: require a client certificate from this mesh's trust domain."""
    return tls_pb2.DownstreamTlsContext(
        common_tls_context=_common_context(
            string_pb2.StringMatcher(prefix=f"spiffe://{trust_domain}/")
        ),
        require_client_certificate=wrappers_pb2.BoolValue(value=True),
    )


def tls_socket(
    context: tls_pb2.UpstreamTlsContext | tls_pb2.DownstreamTlsContext,
) -> base_pb2.TransportSocket:
    return base_pb2.TransportSocket(name=TLS_SOCKET, typed_config=pack(context))


def raw_socket() -> base_pb2.TransportSocket:
    return base_pb2.TransportSocket(name=RAW_SOCKET, typed_config=pack(raw_buffer_pb2.RawBuffer()))


def referenced_ads_secrets(context: tls_pb2.CommonTlsContext) -> set[str]:
    """Names of secrets a TLS context expects over ADS (for the consistency check)."""
    found: set[str] = set()
    refs = list(context.tls_certificate_sds_secret_configs)
    if context.HasField("validation_context_sds_secret_config"):
        refs.append(context.validation_context_sds_secret_config)
    if context.HasField("combined_validation_context"):
        combined = context.combined_validation_context
        if combined.HasField("validation_context_sds_secret_config"):
            refs.append(combined.validation_context_sds_secret_config)
    for ref in refs:
        if ref.HasField("sds_config") and ref.sds_config.HasField("ads"):
            found.add(ref.name)
    return found
