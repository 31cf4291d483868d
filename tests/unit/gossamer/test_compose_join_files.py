"""The `.gossamer/` folders of several hosts: the first host's gateway token and store,
a joining host's copied tokens, a replica's intermediate CA and mesh.yaml."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gossamer.certs.ca import CertificateAuthority
from gossamer.certs.intermediates import issue_local
from gossamer.certs.tokens import TokenStore
from gossamer.compose import names
from gossamer.compose.join_files import JoinInputs, replica_mesh
from gossamer.compose.options import InjectOptions
from gossamer.compose.workflow import inject_file
from gossamer.errors import ConfigError, UsageError
from tests.helpers.compose import plain


def load_file(path: Path):
    return plain(path.read_text())


TEXT = "services:\n  catalog:\n    image: c\n    expose: [8080]\n"
OTHER = "services:\n  web:\n    image: w\n    expose: [9000]\n"
FIRST = InjectOptions(node="host-1", advertise_host="10.0.0.1", etcd="etcd://e:2379/gossamer")
JOIN = InjectOptions(node="host-2", advertise_host="10.0.0.2", join=("10.0.0.1:15012",))
REPLICA = InjectOptions(
    node="host-3", advertise_host="10.0.0.3", join=("10.0.0.1:15012",), control_replica=True
)


def host(tmp: Path, name: str, text: str = TEXT) -> Path:
    folder = tmp / name
    folder.mkdir()
    (folder / "compose.yaml").write_text(text)
    return folder / "compose.yaml"


@pytest.fixture
def first(tmp_path: Path) -> Path:
    other = host(tmp_path, "other", OTHER)
    compose = host(tmp_path, "host-1")
    inject_file(compose, None, FIRST, join_inputs=JoinInputs(services_of=(other,)))
    return compose.parent


def make_tokens(ca_dir: Path, out: Path, services: list[str], gateway_host: str) -> None:
    store = TokenStore(ca_dir)
    pin = CertificateAuthority.load(ca_dir).root_pin()
    out.mkdir(exist_ok=True)
    for service in services:
        token, _ = store.create(service, pin, addresses=[service])
        (out / names.join_token_name(service)).write_text(token + "\n")
    token, _ = store.create("gateway", pin, namespace="gossamer-system", addresses=[gateway_host])
    (out / names.join_token_name("gateway", "gossamer-system")).write_text(token + "\n")


def test_the_first_host_makes_the_gateway_a_token_allowing_its_address(first: Path):
    ca_dir = first / names.CA_DIR
    token = (first / names.token_file(names.GATEWAY)).read_text().strip()
    record = TokenStore(ca_dir).verify(token, service="gateway", namespace="gossamer-system")
    assert record.addresses == ("10.0.0.1",)
    mesh = load_file(first / names.MESH_FILE)
    assert mesh["control"]["store"] == "etcd://e:2379/gossamer"
    # its own services and the other host's (--services-of) are declared
    assert [s["name"] for s in mesh["services"]] == ["catalog", "web"]
    # injecting again keeps the gateway's token (still valid, still allowing the address)
    inject_file(first / "compose.yaml", None, FIRST)
    assert (first / names.token_file(names.GATEWAY)).read_text().strip() == token
    # another advertised address needs another token
    moved = InjectOptions(node="host-1", advertise_host="10.9.9.9", etcd=FIRST.etcd)
    inject_file(first / "compose.yaml", None, moved)
    new = (first / names.token_file(names.GATEWAY)).read_text().strip()
    assert new != token
    assert TokenStore(ca_dir).verify(new).addresses == ("10.9.9.9",)


def test_a_joining_host_copies_its_tokens_and_makes_no_ca(first: Path, tmp_path: Path):
    tokens = tmp_path / "for-host-2"
    make_tokens(first / names.CA_DIR, tokens, ["catalog"], "10.0.0.2")
    compose = host(tmp_path, "host-2")
    outcome = inject_file(compose, None, JOIN, join_inputs=JoinInputs(token_dir=tokens))
    base = compose.parent
    assert outcome.joined is not None and outcome.bootstrap is None
    assert sorted(outcome.joined.tokens_copied) == [
        "catalog.token",
        "gateway.gossamer-system.token",
    ]
    for name in ("catalog", names.GATEWAY):
        copied = (base / names.token_file(name)).read_text()
        assert copied.startswith("gst1.")
    assert not (base / names.CA_DIR).exists() and not (base / names.MESH_FILE).exists()
    # again without --token-dir: the copies are used
    shutil.rmtree(tokens)
    again = inject_file(base / "compose.meshed.yaml", None, JOIN)
    assert again.joined is not None and len(again.joined.tokens_kept) == 2


def test_a_missing_or_malformed_token_is_named(tmp_path: Path):
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    compose = host(tmp_path, "host-2")
    with pytest.raises(ConfigError, match=r"missing in .*catalog.token, gateway.gossamer-system"):
        inject_file(compose, None, JOIN, join_inputs=JoinInputs(token_dir=tokens))
    (tokens / "catalog.token").write_text("not a token\n")
    with pytest.raises(ConfigError, match=r"catalog\.token: not a Gossamer join token"):
        inject_file(compose, None, JOIN, join_inputs=JoinInputs(token_dir=tokens))
    assert not (compose.parent / "compose.meshed.yaml").exists()


def test_a_replica_gets_its_intermediate_and_the_first_hosts_mesh(first: Path, tmp_path: Path):
    root = CertificateAuthority.load(first / names.CA_DIR)
    inter = tmp_path / "host-3-ca"
    issue_local(root, inter, "host-3")
    tokens = tmp_path / "for-host-3"
    make_tokens(first / names.CA_DIR, tokens, ["catalog"], "10.0.0.3")
    compose = host(tmp_path, "host-3")
    inputs = JoinInputs(token_dir=tokens, intermediate=inter, mesh_file=first / names.MESH_FILE)
    outcome = inject_file(compose, None, REPLICA, join_inputs=inputs)
    base = compose.parent
    assert outcome.joined is not None and outcome.joined.ca_copied
    copied = sorted(p.name for p in (base / names.CA_DIR).iterdir())
    assert "ca.json" in copied and not [
        n for n in copied if n.startswith("root-") and n.endswith(".key")
    ]
    mesh = load_file(base / names.MESH_FILE)
    assert [s["name"] for s in mesh["services"]] == ["catalog", "web"]
    assert mesh["control"]["store"] == "etcd://e:2379/gossamer"
    assert mesh["control"]["ca_dir"] == names.CONTAINER_CA_DIR


def test_a_replica_refuses_the_root_ca_and_an_embedded_store(first: Path, tmp_path: Path):
    compose = host(tmp_path, "host-3")
    tokens = tmp_path / "t"
    make_tokens(first / names.CA_DIR, tokens, ["catalog"], "10.0.0.3")
    root = JoinInputs(token_dir=tokens, intermediate=first / names.CA_DIR,
                      mesh_file=first / names.MESH_FILE)  # fmt: skip
    with pytest.raises(UsageError, match="holds a root key"):
        inject_file(compose, None, REPLICA, join_inputs=root)
    embedded = tmp_path / "mesh.yaml"
    embedded.write_text((first / names.MESH_FILE).read_text().replace(
        '"etcd://e:2379/gossamer"', "embedded"))  # fmt: skip
    with pytest.raises(ConfigError, match="store is not etcd"):
        replica_mesh(embedded, None)
    assert "etcd://f:2379/gossamer" in replica_mesh(embedded, "etcd://f:2379/gossamer")


@pytest.mark.parametrize(
    ("options", "inputs", "message"),
    [
        (FIRST, JoinInputs(token_dir=Path("t")), "go with --join"),
        (JOIN, JoinInputs(mesh_file=Path("m")), "go with --control-replica"),
        (JOIN, JoinInputs(services_of=(Path("f"),)), "--services-of goes with --node"),
        (REPLICA, JoinInputs(), "--control-replica needs --intermediate"),
    ],
)
def test_inputs_that_do_not_fit_are_refused(tmp_path: Path, options, inputs, message):
    compose = host(tmp_path, "h")
    with pytest.raises(UsageError, match=message):
        inject_file(compose, None, options, join_inputs=inputs)
