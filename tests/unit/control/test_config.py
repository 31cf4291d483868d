from __future__ import annotations

from pathlib import Path

import pytest

from gossamer.contract.identity import ServiceKey
from gossamer.control.config import (
    Address,
    load_mesh,
    load_mesh_text,
    mesh_from_mapping,
    parse_address,
)
from gossamer.errors import ConfigError

FULL = """\
trust_domain: example.org
control:
  xds_listen: 0.0.0.0:15012
  insecure_xds_listen: 127.0.0.1:15010
  api_listen: 127.0.0.1:15014
  ca_dir: ca
  data_dir: /var/lib/gossamer
  store: etcd://10.0.0.1:2379,10.0.0.2:2379
services:
  - name: catalog
    ports: [{port: 8080, protocol: http}]
    lb_policy: ring_hash
    hash_header: X-User
    timeout: 5s
    retries: {attempts: 2, per_try_timeout: 1s, on: [connect-failure, reset, 503], budget_percent: 20}
    authorization: {allow: [spiffe://example.org/ns/default/sa/web]}
  - name: web
    namespace: shop
"""


def test_defaults():
    mesh = mesh_from_mapping({})
    assert mesh.trust_domain == "gossamer.local"
    assert mesh.control.xds_listen == Address("0.0.0.0", 15012)
    assert mesh.control.insecure_xds_listen is None
    assert mesh.control.api_listen == Address("127.0.0.1", 15014)
    assert mesh.control.ca_dir == Path(".gossamer/ca")
    assert mesh.control.data_dir == Path(".gossamer/data")
    assert str(mesh.control.store) == "embedded"
    assert mesh.policy_for(ServiceKey("default", "x")).lb_policy == "round_robin"
    assert mesh.control.max_token_ttl == mesh.control.max_cert_ttl == 24 * 3600


def test_ttl_caps_raised():
    mesh = mesh_from_mapping({"control": {"max_token_ttl": "72h", "max_cert_ttl": "168h"}})
    assert (mesh.control.max_token_ttl, mesh.control.max_cert_ttl) == (72 * 3600, 168 * 3600)


def test_full_file(tmp_path):
    path = tmp_path / "mesh.yaml"
    path.write_text(FULL)
    _root, mesh = load_mesh(path)
    assert mesh.trust_domain == "example.org"
    assert mesh.control.insecure_xds_listen == Address("127.0.0.1", 15010)
    assert mesh.control.ca_dir == tmp_path / "ca"  # relative to the file
    assert mesh.control.data_dir == Path("/var/lib/gossamer")
    assert mesh.control.store == "etcd://10.0.0.1:2379,10.0.0.2:2379"
    policy = mesh.policy_for(ServiceKey("default", "catalog"))
    assert policy.lb_policy == "ring_hash" and policy.hash_header == "x-user"
    assert policy.timeout == 5.0
    assert policy.retries is not None
    assert policy.retries.attempts == 2 and policy.retries.per_try_timeout == 1.0
    assert policy.retries.on == ("connect-failure", "reset")
    assert policy.retries.status_codes == (503,)
    assert policy.retries.budget_percent == 20.0
    assert policy.allows("spiffe://example.org/ns/default/sa/web")
    assert not policy.allows("spiffe://example.org/ns/default/sa/other")
    assert ServiceKey("shop", "web") in mesh.policies


@pytest.mark.parametrize(
    ("snippet", "line", "field", "words"),
    [
        ("    lb_policy: fastest\n", 4, "services[0].lb_policy", "must be one of"),
        ("    hash_header: x-user\n", 4, "services[0].hash_header", "ring_hash"),
        ("    timeout: soon\n", 4, "services[0].timeout", "duration"),
        ("    retries: {attempts: 20}\n", 4, "services[0].retries.attempts", "between 0 and 10"),
        (
            "    retries: {attempts: 1, on: [teapot]}\n",
            4,
            "services[0].retries.on[0]",
            "must be one of",
        ),
        ("    retries: {attempts: 1, on: [700]}\n", 4, "services[0].retries.on[0]", "599"),
        (
            "    retries: {attempts: 1, per_try_timeout: 0s}\n",
            4,
            "services[0].retries.per_try_timeout",
            "longer",
        ),
        (
            "    retries: {attempts: 1, budget_percent: 0}\n",
            4,
            "services[0].retries.budget_percent",
            "greater",
        ),
        ("    retries: {attempts: 1, tries: 2}\n", 4, "services[0].retries.tries", "unknown field"),
        (
            "    authorization: {allow: [web]}\n",
            4,
            "services[0].authorization.allow[0]",
            "SPIFFE ID",
        ),
        (
            "    authorization: {allow: ['spiffe://other.org/ns/default/sa/web']}\n",
            4,
            "services[0].authorization.allow[0]",
            "trust domain",
        ),
        (
            "    authorization: {allow: null}\n",
            4,
            "services[0].authorization.allow",
            "list of SPIFFE",
        ),
        ("    colour: blue\n", 4, "services[0].colour", "unknown field"),
    ],
)
def test_policy_errors_name_field_and_line(snippet, line, field, words):
    text = "services:\n  - name: catalog\n    ports: [{port: 8080}]\n" + snippet
    with pytest.raises(ConfigError) as info:
        load_mesh_text(text, source="mesh.yaml")
    err = info.value
    assert (err.field, err.line) == (field, line), str(err)
    assert words in str(err)
    assert str(err).startswith(f"mesh.yaml:{line}: {field}:")


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ("trust_domain: Bad_Domain!\n", "trust_domain", "not a valid trust domain"),
        ("control: {xds_listen: nowhere}\n", "control.xds_listen", "host:port"),
        ("control: {api_listen: '127.0.0.1:99999'}\n", "control.api_listen", "port"),
        ("control: {store: postgres://x}\n", "control.store", "unknown registry store"),
        ("control: {api_listen: '0.0.0.0:15012'}\n", "control.api_listen", "already used"),
        ("control: {listen: x}\n", "control.listen", "unknown field"),
        ("control: {max_token_ttl: 31d}\n", "control.max_token_ttl", "between 1m and 720h"),
        ("control: {max_cert_ttl: 10s}\n", "control.max_cert_ttl", "between 1m and 720h"),
        ("tracing: on\n", "tracing", "unknown field"),
        ("services:\n  - {name: Catalog}\n", "services[0].name", "DNS-1123"),
        ("services:\n  - {name: a}\n  - {name: a}\n", "services[1].name", "defined twice"),
    ],
)
def test_top_level_errors(text, field, words):
    with pytest.raises(ConfigError) as info:
        load_mesh_text(text, source="mesh.yaml")
    assert info.value.field == field, str(info.value)
    assert words in str(info.value)
    assert info.value.line is not None


def test_wildcard_authorization_patterns():
    mesh = mesh_from_mapping(
        {
            "services": [
                {
                    "name": "a",
                    "authorization": {
                        "allow": [
                            "spiffe://gossamer.local/ns/shop/sa/*",
                            "spiffe://gossamer.local/ns/*/sa/*",
                        ]
                    },
                },
                {"name": "b", "authorization": {"allow": []}},
            ]
        }
    )
    a = mesh.policy_for(ServiceKey("default", "a"))
    assert a.allows("spiffe://gossamer.local/ns/anything/sa/x")
    b = mesh.policy_for(ServiceKey("default", "b"))
    assert not b.allows("spiffe://gossamer.local/ns/default/sa/a")


def test_star_namespace_needs_star_service():
    with pytest.raises(ConfigError, match="needs a \\* service"):
        mesh_from_mapping(
            {
                "services": [
                    {"name": "a", "authorization": {"allow": ["spiffe://gossamer.local/ns/*/sa/x"]}}
                ]
            }
        )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:80", Address("127.0.0.1", 80)),
        ("[::1]:15010", Address("::1", 15010)),
        ("localhost:0", Address("localhost", 0)),
        ("cp.example:1", Address("cp.example", 1)),
    ],
)
def test_parse_address(text, expected):
    assert parse_address(text) == expected
    assert parse_address(str(expected)) == expected


@pytest.mark.parametrize("text", ["80", ":80", "::1:80", "[::1]80", "host:", "host:x", "a b:1"])
def test_parse_address_rejects(text):
    with pytest.raises(ValueError):
        parse_address(text)


def test_store_url_and_lease_ttl():
    mesh = mesh_from_mapping({"control": {"store": "etcd://a:1,b:2/mesh", "lease_ttl": "30s"}})
    assert mesh.control.store == "etcd://a:1,b:2/mesh"
    assert mesh.control.lease_ttl == 30.0
    with pytest.raises(ConfigError, match="no etcd members"):
        mesh_from_mapping({"control": {"store": "etcd://"}})
    with pytest.raises(ConfigError, match="between 1s and 1h"):
        mesh_from_mapping({"control": {"lease_ttl": "0.1s"}})
