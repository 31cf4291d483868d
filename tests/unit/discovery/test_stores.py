"""Store URLs: `embedded` and `etcd://...`; bad URLs are ConfigErrors."""

from __future__ import annotations

from pathlib import Path

import pytest

from gossamer.discovery.embedded import EmbeddedStore
from gossamer.discovery.etcd import EtcdStore, grpc_target
from gossamer.discovery.stores import open_store, parse_store_url
from gossamer.errors import ConfigError


@pytest.mark.parametrize(
    ("url", "endpoints", "prefix"),
    [
        ("etcd://127.0.0.1:2379", (("127.0.0.1", 2379),), "/gossamer"),
        (
            "etcd://127.0.0.1:2379,127.0.0.1:22379/prod/mesh",
            (("127.0.0.1", 2379), ("127.0.0.1", 22379)),
            "/prod/mesh",
        ),
        ("etcd://[::1]:2379/x/", (("::1", 2379),), "/x"),
        ("etcd://etcd-1:2379", (("etcd-1", 2379),), "/gossamer"),
    ],
)
def test_parse_etcd_urls(url: str, endpoints: tuple[tuple[str, int], ...], prefix: str):
    spec = parse_store_url(url)
    assert (spec.kind, spec.endpoints, spec.prefix) == ("etcd", endpoints, prefix)
    assert parse_store_url(spec.describe()) == spec


@pytest.mark.parametrize(
    "url",
    [
        "",
        "etcd",
        "etcd://",
        "etcd://host",
        "etcd://host:port",
        "etcd://h:0",
        "etcd://h:70000",
        "http://127.0.0.1:2379",
        "embedded://x",
        "etcd://h:1/bad prefix",
        "etcd://h:1,",
    ],
)
def test_bad_urls_are_config_errors(url: str):
    with pytest.raises(ConfigError) as info:
        parse_store_url(url)
    assert info.value.field == "store" and info.value.hint


def test_open_store_picks_the_class(tmp_path: Path):
    embedded = open_store("embedded", data_dir=tmp_path)
    assert isinstance(embedded, EmbeddedStore) and embedded.path == tmp_path / "registry.json"
    etcd = open_store("etcd://localhost:2379/p", data_dir=tmp_path)
    assert isinstance(etcd, EtcdStore) and etcd.layout.prefix == "/p"
    assert all(host in ("127.0.0.1", "::1") for host, _ in etcd.endpoints)


def test_grpc_targets():
    assert grpc_target([("127.0.0.1", 1), ("127.0.0.2", 2)]) == "ipv4:127.0.0.1:1,127.0.0.2:2"
    assert grpc_target([("::1", 1)]) == "ipv6:[::1]:1"
    with pytest.raises(ConfigError):
        grpc_target([("::1", 1), ("127.0.0.1", 2)])
    with pytest.raises(ConfigError):
        grpc_target([])
