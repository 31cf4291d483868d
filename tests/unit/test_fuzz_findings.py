"""What the fuzzing campaign (issue 17) found, each as a small direct test; the crashing
inputs themselves replay in test_fuzz_inputs.py (tests/data/fuzz/)."""

from __future__ import annotations

from pathlib import Path

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from google.protobuf import any_pb2

from fuzz.targets.csr import signed_csr
from gossamer.certs.csr import load_csr, validate_csr
from gossamer.certs.errors import CsrError, NotACsr
from gossamer.compose.inject import inject_text
from gossamer.compose.plan import InjectOptions
from gossamer.contract import xds
from gossamer.control.config import load_mesh_text
from gossamer.errors import ConfigError
from gossamer.proxy.xds.clusters import decode_clusters
from gossamer.proxy.xds.listeners import decode_listeners

DATA = Path(__file__).resolve().parents[1] / "data" / "fuzz"


def _any(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def test_a_resource_whose_bytes_do_not_parse_is_a_nack():
    # was: protobuf's DecodeError out of the decoder
    bad = any_pb2.Any(type_url=xds.CLUSTER, value=b"\x0a\x02\xff\xfe")  # name: bad UTF-8
    with pytest.raises(ConfigError, match="does not parse"):
        decode_clusters([bad])


def test_an_unknown_listener_filter_is_a_nack():
    # was: AttributeError (a ListenerFilter has no is_optional)
    listener = listener_pb2.Listener(name="outbound")
    listener.listener_filters.append(listener_components_pb2.ListenerFilter(name="x"))
    with pytest.raises(ConfigError, match="listener filter x unknown"):
        decode_listeners([_any(listener)], "gossamer.local")


def test_an_enum_value_this_version_does_not_name_is_a_nack():
    # was: ValueError from DiscoveryType.Name(7)
    cluster = cluster_pb2.Cluster(name="outbound|80||a.default", type=7)
    with pytest.raises(ConfigError, match="discovery type 7"):
        decode_clusters([_any(cluster)])


def test_a_corrupt_lb_policy_marker_is_a_nack():
    # was: DecodeError out of lb_policies.decode
    cluster = cluster_pb2.Cluster(name="outbound|80||a.default", type=cluster_pb2.Cluster.EDS)
    entry = cluster.load_balancing_policy.policies.add()
    entry.typed_extension_config.typed_config.type_url = (
        "type.googleapis.com/xds.type.v3.TypedStruct"
    )
    entry.typed_extension_config.typed_config.value = b"\x0a\xff"
    with pytest.raises(ConfigError):
        decode_clusters([_any(cluster)])


def test_a_compose_file_with_a_dangling_depends_on_is_the_users_error():
    # was: GossamerError "internal error: the injected version ... fails its own check"
    text = "services:\n  a:\n    image: x\n    depends_on: [ghost]\n"
    with pytest.raises(ConfigError, match="no service named 'ghost'") as caught:
        inject_text(text, InjectOptions(), source="compose.yaml")
    assert "internal error" not in caught.value.message


def test_a_csr_with_a_malformed_extension_request_is_not_a_csr():
    # was: ValueError "Only single-valued attributes are supported" from csr.extensions
    crash = DATA / "csr" / "multi-valued-extension-request"
    with pytest.raises(NotACsr):
        load_csr(signed_csr(crash.read_bytes()[1:]))


def test_an_inbound_chain_named_without_a_port_number_is_a_nack():
    # was: ValueError from int("80[0") on the chain name
    listener = listener_pb2.Listener(name="inbound")
    listener.filter_chains.add(name="inbound|80[0")
    with pytest.raises(ConfigError, match="no SNI"):
        decode_listeners([_any(listener)], "gossamer.local")


def test_an_observability_url_with_a_bad_bracketed_host_is_a_config_error():
    # was: ValueError from urlsplit (the bracketed host is not an IP address)
    text = "services: []\nobservability: {prometheus_url: 'http://[not-an-ip]/'}\n"
    with pytest.raises(ConfigError, match="expected an http"):
        load_mesh_text(text, source="mesh.yaml")


def test_a_csr_whose_key_cryptography_cannot_load_is_an_unsupported_key():
    # was: cryptography's UnsupportedAlgorithm out of CertificateAuthority.issue
    crash = DATA / "csr" / "unsupported-curve-encoding"
    data = crash.read_bytes()
    csr = signed_csr(data[1:]) if data[0] & 1 else data[1:]
    with pytest.raises(CsrError):
        validate_csr(csr, "spiffe://gossamer.local/ns/default/sa/web")


def test_a_cluster_port_that_is_not_a_port_number_is_a_nack():
    # was: ValueError from int(nan) on the gossamer metadata's port
    cluster = cluster_pb2.Cluster(name="outbound|80||a.default", type=cluster_pb2.Cluster.EDS)
    cluster.metadata.filter_metadata[xds.GOSSAMER_METADATA].update({"port": float("nan")})
    with pytest.raises(ConfigError, match="is not a port"):
        decode_clusters([_any(cluster)])


def test_a_scalar_ruamel_cannot_construct_is_a_config_error():
    # was: IndexError inside ruamel.yaml's int constructor
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_mesh_text("-_", source="mesh.yaml")


def test_a_csr_with_a_duplicate_extension_is_not_a_csr():
    # was: cryptography's DuplicateExtension out of CertificateAuthority.issue
    data = (DATA / "csr" / "duplicate-extension").read_bytes()
    csr = signed_csr(data[1:]) if data[0] & 1 else data[1:]
    with pytest.raises(CsrError):
        validate_csr(csr, "spiffe://gossamer.local/ns/default/sa/web")
