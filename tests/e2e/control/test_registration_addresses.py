"""Registered addresses are checked (issue 17, finding 10), over a real `gossamer control`
process, real `gossamer proxy` sidecars, the real CLI and grpcio clients with real leaves:

- a sidecar registering an address that is neither its connection's nor in its leaf is
  refused (PERMISSION_DENIED naming the address and `--allow-address`), logged by the
  sidecar, counted by the control plane, and never reaches the registry;
- with a join token made with `gossamer token create --allow-address ADDR` (or the
  API's `"addresses"`) the leaf carries ADDR as an IP SAN and the same registration is
  accepted; a renewal keeps that SAN and cannot add one;
- the normal paths still register: no address (the peer's), the peer address itself,
  and, seen from a non-loopback peer, loopback is refused.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from gossamer.certs.keys import build_csr, generate_key
from gossamer.contract import grpcio_calls as calls
from gossamer.contract import mesh_pb2
from gossamer.proxy.agent.bootstrap import WorkloadCredentials, bootstrap
from gossamer.proxy.transport.local_networks import local_addresses
from tests.helpers.control_plane import control_plane_process, web_mesh
from tests.helpers.grpcio_tls import GRPC_TLS_OPTIONS, mtls_channel_credentials
from tests.helpers.metrics_text import metric_sum
from tests.helpers.operator_api import api_call
from tests.helpers.procs import Process, free_port, gossamer_cmd, http_get, run_gossamer, wait_for

pytestmark = pytest.mark.e2e
TD = "gossamer.local"
WEB = f"spiffe://{TD}/ns/default/sa/web"
FOREIGN = "192.0.2.10"  # TEST-NET-1: no machine's own address


@dataclass
class Plane:
    tmp: Path
    ca: Path
    api_port: int
    xds_port: int
    boot_port: int
    admin: str
    host_ip: str  # a non-loopback address of this machine; the xDS port listens on all


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    tmp = tmp_path_factory.mktemp("addresses")
    api_port, xds_port, boot_port = free_port(), free_port(), free_port()
    data = web_mesh(tmp, xds_port=xds_port, bootstrap_port=boot_port, api_port=api_port)
    data["control"]["xds_listen"] = f"[::]:{xds_port}"  # dual stack: IPv4 and IPv6 peers
    [host_ip, *_] = local_addresses()
    with control_plane_process(tmp, data):
        admin = (tmp / "data" / "admin-token").read_text().strip()
        yield Plane(tmp, tmp / "ca", api_port, xds_port, boot_port, admin, host_ip)


def _token(plane: Plane, *allow: str) -> str:
    args = ["token", "create", "--service", "web", "--dir", str(plane.ca), "-o", "json"]
    for address in allow:
        args += ["--allow-address", address]
    made = run_gossamer(*args)
    assert made.returncode == 0, made.stderr
    return str(json.loads(made.stdout)["token"])


def _certify(plane: Plane, token: str, instance: str) -> WorkloadCredentials:
    return asyncio.run(
        bootstrap("127.0.0.1", plane.boot_port, token, "web", "default", TD, instance_id=instance)
    )


def _leaf_ips(pem: bytes) -> list[str]:
    cert = x509.load_pem_x509_certificate(pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]


def _endpoints(plane: Plane) -> dict[str, dict[str, object]]:
    status, body = api_call(plane.api_port, "/v1/endpoints", plane.admin)
    assert status == 200, body
    return {str(e["instance_id"]): e for e in body["endpoints"]}


def _refused(plane: Plane) -> float:
    _status, text = http_get(f"http://127.0.0.1:{plane.api_port}/metrics")
    name = "gossamer_control_registrations_refused_total"
    assert name in text.decode()
    return metric_sum(text.decode(), name, reason="foreign_address")


async def _register(
    plane: Plane, target: str, creds: WorkloadCredentials, instance: mesh_pb2.Instance
) -> tuple[mesh_pb2.RegisterResponse | grpc.aio.AioRpcError, object]:
    """Register `instance` over mutual TLS to `target`: the first reply (or the error)
    and the address the registry then holds for it (None: none), then deregister."""
    async with grpc.aio.secure_channel(
        target, mtls_channel_credentials(creds), GRPC_TLS_OPTIONS
    ) as channel:
        call = calls.register(channel)()
        await call.write(mesh_pb2.RegisterRequest(instance=instance))
        try:
            reply: mesh_pb2.RegisterResponse = await call.read()
        except grpc.aio.AioRpcError as exc:
            return exc, None
        try:
            await asyncio.to_thread(wait_for, lambda: instance.instance_id in _endpoints(plane), 10)
            return reply, _endpoints(plane)[instance.instance_id]["address"]
        finally:
            call.cancel()


def _register_sync(plane: Plane, creds, address: str, via: str = "127.0.0.1"):
    """The reply (or error) and the registered address, `via` an address of the plane."""
    instance = mesh_pb2.Instance(instance_id=f"probe-{address}", address=address, port=15006)
    host = f"[{via}]" if ":" in via else via
    return asyncio.run(_register(plane, f"{host}:{plane.xds_port}", creds, instance))


def test_a_foreign_address_is_refused_and_counted(plane: Plane):
    creds = _certify(plane, _token(plane), "grpc-1")
    assert _leaf_ips(creds.chain_pem) == []
    before = _refused(plane)
    error, _ = _register_sync(plane, creds, FOREIGN)
    assert isinstance(error, grpc.aio.AioRpcError)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    details = error.details() or ""
    assert f"{WEB} may not register address {FOREIGN}: it connects from 127.0.0.1" in details
    assert f"--allow-address {FOREIGN}" in details
    assert _refused(plane) == before + 1
    assert not any(e["address"] == FOREIGN for e in _endpoints(plane).values())


def test_the_normal_paths_still_register(plane: Plane):
    creds = _certify(plane, _token(plane), "grpc-2")
    # no address: the one the control plane sees; the peer address itself (in any
    # spelling); another loopback address from a loopback peer; IPv6 (grpcio writes
    # `ipv6:%5B::1%5D:port`)
    for asked, via, registered in [
        ("", "127.0.0.1", "127.0.0.1"),
        ("127.0.0.1", "127.0.0.1", "127.0.0.1"),
        ("::ffff:127.0.0.1", "127.0.0.1", "127.0.0.1"),
        ("127.0.0.2", "127.0.0.1", "127.0.0.2"),
        ("", plane.host_ip, plane.host_ip),
        (plane.host_ip, plane.host_ip, plane.host_ip),
        ("", "::1", "::1"),
        ("0:0::1", "::1", "::1"),
    ]:
        reply, address = _register_sync(plane, creds, asked, via)
        assert isinstance(reply, mesh_pb2.RegisterResponse), (asked, via, reply)
        assert reply.status == "registered" and address == registered, (asked, via, address)
    # a non-loopback peer may not point the control plane at loopback
    error, _ = _register_sync(plane, creds, "127.0.0.1", plane.host_ip)
    assert isinstance(error, grpc.aio.AioRpcError)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert f"it connects from {plane.host_ip}" in (error.details() or "")


def test_an_address_the_token_allows_is_in_the_leaf_and_registers(plane: Plane):
    creds = _certify(plane, _token(plane, FOREIGN), "grpc-3")
    assert _leaf_ips(creds.chain_pem) == [FOREIGN]
    reply, address = _register_sync(plane, creds, FOREIGN)
    assert isinstance(reply, mesh_pb2.RegisterResponse) and reply.status == "registered"
    assert address == FOREIGN
    # the API's "addresses" does the same
    status, made = api_call(
        plane.api_port,
        "/v1/tokens",
        plane.admin,
        "POST",
        {"service": "web", "addresses": ["192.0.2.11"]},
    )
    assert status == 201 and made["addresses"] == ["192.0.2.11"], made
    assert _leaf_ips(_certify(plane, made["token"], "grpc-4").chain_pem) == ["192.0.2.11"]
    status, refused = api_call(
        plane.api_port,
        "/v1/tokens",
        plane.admin,
        "POST",
        {"service": "web", "addresses": ["gossamer-control"]},
    )
    assert status == 400 and "control plane's own certificate" in refused["error"], refused


def _csr_asking(key, ip: str) -> bytes:
    sans = [x509.UniformResourceIdentifier(WEB), x509.IPAddress(ipaddress.ip_address(ip))]
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "t")]))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )


async def _renew(plane: Plane, creds: WorkloadCredentials, csr: bytes):
    async with grpc.aio.secure_channel(
        f"127.0.0.1:{plane.xds_port}", mtls_channel_credentials(creds), GRPC_TLS_OPTIONS
    ) as channel:
        try:
            return await calls.certify(channel)(mesh_pb2.CertifyRequest(csr=csr), timeout=10)
        except grpc.aio.AioRpcError as exc:
            return exc


def test_a_renewal_keeps_the_leafs_addresses_and_adds_none(plane: Plane):
    creds = _certify(plane, _token(plane, FOREIGN), "grpc-5")
    renewed = asyncio.run(_renew(plane, creds, build_csr(generate_key(), WEB)))
    assert isinstance(renewed, mesh_pb2.CertifyResponse), renewed
    assert _leaf_ips(renewed.cert_chain) == [FOREIGN]
    asking = asyncio.run(_renew(plane, creds, _csr_asking(generate_key(), "192.0.2.99")))
    assert isinstance(asking, grpc.aio.AioRpcError)
    assert asking.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "IP address 192.0.2.99, not allowed" in (asking.details() or "")
    # a leaf without addresses renews without any
    plain = _certify(plane, _token(plane), "grpc-6")
    again = asyncio.run(_renew(plane, plain, build_csr(generate_key(), WEB)))
    assert isinstance(again, mesh_pb2.CertifyResponse) and _leaf_ips(again.cert_chain) == []


def _sidecar(plane: Plane, name: str, token: str, *extra: str) -> Process:
    args = gossamer_cmd(
        "proxy", "--service", "web", "--instance-id", name,
        "--control", f"127.0.0.1:{plane.xds_port}",
        "--bootstrap", f"127.0.0.1:{plane.boot_port}",
        "--inbound-port", str(free_port()), "--outbound-port", str(free_port()),
        "--admin-port", str(free_port()), "--metrics-port", str(free_port()), *extra,
    )  # fmt: skip
    return Process(args, plane.tmp / f"{name}.log", env={"GOSSAMER_TOKEN": token})


def test_real_sidecars_with_advertise_address(plane: Plane):
    refused = _sidecar(plane, "web-refused", _token(plane), "--advertise-address", "192.0.2.20")
    allowed = _sidecar(
        plane, "web-allowed", _token(plane, "192.0.2.21"), "--advertise-address", "192.0.2.21"
    )
    plain = _sidecar(plane, "web-plain", _token(plane))
    try:
        wait_for(
            lambda: {"web-allowed", "web-plain"} <= set(_endpoints(plane)),
            30,
            what="the allowed and the plain sidecar are registered",
        )
        endpoints = _endpoints(plane)
        assert endpoints["web-allowed"]["address"] == "192.0.2.21"
        assert endpoints["web-plain"]["address"] == "127.0.0.1"
        wait_for(
            lambda: "registration refused" in refused.output(),
            30,
            what="the sidecar with a foreign address logs its refusal",
        )
        out = refused.output()
        assert "may not register address 192.0.2.20" in out, out[-2000:]
        assert "--allow-address 192.0.2.20" in out
        assert "web-refused" not in _endpoints(plane)
        assert refused.alive()  # it keeps serving and retrying; nothing crashed
    finally:
        for proc in (refused, allowed, plain):
            proc.stop()


def test_token_create_refuses_addresses_no_token_may_allow(plane: Plane):
    for address, says in [
        ("127.0.0.1", "127.0.0.1 may not be allowed: an unspecified, multicast or loopback"),
        ("gossamer-control", "gossamer-control is a name of the control plane's own"),
        ("bad host", "'bad host' is neither an IP address nor a host name"),
    ]:
        made = run_gossamer(
            "token",
            "create",
            "--service",
            "web",
            "--dir",
            str(plane.ca),
            "--allow-address",
            address,
        )
        assert made.returncode == 2, made.stdout
        assert made.stderr.startswith(f"error: --allow-address: {says}"), made.stderr
        assert "Traceback" not in made.stderr
