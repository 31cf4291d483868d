"""The sidecar's DNS beside Docker's embedded DNS, on a real Docker Engine.

A small file injected by the real `gossamer inject` (transparent mode: DNS capture on):
`web` and `catalog` meshed, `legacy` not meshed at a fixed address, and mesh.yaml
declaring `legacy-api` with `legacy` as its static endpoint (a service the mesh knows
whose endpoints are all elsewhere, which Docker's DNS does not know). Inside web's
namespace, through glibc as any app: `legacy-api` resolves to its VIP and HTTP to it
is answered (over UDP and TCP DNS); `catalog` (local) resolves to Docker's address, as
before; a name of the Docker network outside the mesh (`legacy`) too; the rules sit
before Docker's DOCKER_OUTPUT; and Docker's own queries to the host's resolvers are not
looped through the sidecar (the sidecar's count of forwarded queries stays small).

The image is `gossamer:latest` (tests/docker/prepare builds it from this tree), or
$GOSSAMER_TEST_IMAGE.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.compose import run_cli
from tests.helpers.docker_compose import (
    ComposeProject,
    docker,
    require_engine,
    unique_project_name,
)

pytestmark = [pytest.mark.docker, pytest.mark.e2e, pytest.mark.timeout(400)]

IMAGE = os.environ.get("GOSSAMER_TEST_IMAGE", "gossamer:latest")
SUBNET = "172.31.77"
PLAIN = f"""services:
  web:
    image: {IMAGE}
    init: true  # tini as PID 1: the app stops on SIGTERM, not after the 10 s kill
    entrypoint: [python3, -m, http.server, "8080"]
    expose: ["8080"]
    networks: [shop]
  catalog:
    image: {IMAGE}
    init: true  # tini as PID 1: the app stops on SIGTERM, not after the 10 s kill
    entrypoint: [python3, -m, http.server, "8080"]
    expose: ["8080"]
    networks: [shop]
  legacy:
    image: {IMAGE}
    init: true  # tini as PID 1: the app stops on SIGTERM, not after the 10 s kill
    entrypoint: [python3, -m, http.server, "8000"]
    networks:
      shop:
        ipv4_address: {SUBNET}.50
networks:
  shop:
    ipam:
      config:
        - subnet: {SUBNET}.0/24
"""
LEGACY_API = f"""  - name: "legacy-api"
    namespace: "default"
    ports: [{{port: 8000, protocol: http}}]
    endpoints:
      - {{address: {SUBNET}.50, port: 8000}}
"""
TCP_QUERY = """
import socket, struct, sys
q = bytes.fromhex("abcd01000001000000000000") + b"\\x0alegacy-api\\x00\\x00\\x01\\x00\\x01"
s = socket.create_connection(("127.0.0.11", 53), timeout=5)
s.sendall(struct.pack("!H", len(q)) + q)
n, = struct.unpack("!H", s.recv(2, socket.MSG_WAITALL))
print(socket.inet_ntoa(s.recv(n, socket.MSG_WAITALL)[-4:]))
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeProject]:
    require_engine()
    workdir: Path = tmp_path_factory.mktemp("dns-capture")
    (workdir / "compose.yaml").write_text(PLAIN)
    out = run_cli("inject", "compose.yaml", "-o", "compose.meshed.yaml", "--image", IMAGE,
                  "--exclude", "legacy", cwd=workdir)  # fmt: skip
    assert out.returncode == 0, out.stderr
    mesh = workdir / ".gossamer" / "mesh.yaml"
    mesh.write_text(mesh.read_text() + LEGACY_API)
    project = ComposeProject(
        unique_project_name("gossamer-dns"), [workdir / "compose.meshed.yaml"], cwd=workdir
    )
    try:
        project.up(timeout=150)
        yield project
    finally:
        project.down_clean()


def sh(project: ComposeProject, *argv: str) -> str:
    return project.exec("web", argv, check=True).stdout.strip()


def dns_status(project: ComposeProject) -> dict[str, Any]:
    body = sh(project, "curl", "-s", "http://127.0.0.1:15000/config_dump?resources=0")
    return dict(json.loads(body)["dns"])


def test_rules_go_before_dockers_dns_and_only_for_its_address(project: ComposeProject) -> None:
    # web-init has exited: read the rules from a container in the same namespace
    netns = project.container_id("web-netns")
    out = docker("run", "--rm", "--network", f"container:{netns}", "--cap-add", "NET_ADMIN",
                 "--entrypoint", "iptables", IMAGE, "-t", "nat", "-S", "OUTPUT").stdout  # fmt: skip
    jumps = [line for line in out.splitlines() if line.startswith("-A OUTPUT")]
    assert jumps[0] == "-A OUTPUT -j GOSSAMER_DNS", jumps
    assert any("DOCKER_OUTPUT" in line for line in jumps[1:]), jumps
    chain = docker("run", "--rm", "--network", f"container:{netns}", "--cap-add", "NET_ADMIN",
                   "--entrypoint", "iptables", IMAGE, "-t", "nat", "-S", "GOSSAMER_DNS").stdout  # fmt: skip
    assert "-d 127.0.0.11/32 -p udp -m udp --dport 53 -j REDIRECT --to-ports 15053" in chain


def test_a_service_docker_does_not_know_resolves_to_its_vip_and_answers(
    project: ComposeProject,
) -> None:
    vip = dns_status(project)["answers"]["legacy-api"]
    assert ipaddress.IPv4Address(vip) in ipaddress.IPv4Network("240.240.0.0/16")
    assert sh(project, "getent", "hosts", "legacy-api").split()[0] == vip
    assert sh(project, "python3", "-c", TCP_QUERY) == vip  # DNS over TCP, redirected too
    code = sh(project, "curl", "-s", "-m", "10", "-o", "/dev/null", "-w", "%{http_code}",
              "http://legacy-api:8000/")  # fmt: skip
    assert code == "200"


def test_names_docker_knows_resolve_as_before(project: ComposeProject) -> None:
    catalog = sh(project, "getent", "hosts", "catalog").split()[0]
    assert catalog.startswith(f"{SUBNET}."), catalog  # Docker's answer, forwarded
    assert sh(project, "getent", "hosts", "legacy").split()[0] == f"{SUBNET}.50"
    code = sh(project, "curl", "-s", "-m", "10", "-o", "/dev/null", "-w", "%{http_code}",
              "http://catalog:8080/")  # fmt: skip
    assert code == "200"
    missing = project.exec("web", ["getent", "hosts", "nowhere.invalid"], check=False)
    assert missing.returncode == 2  # not found, promptly
    queries = dns_status(project)["queries"]
    assert queries["forwarded"] >= 3 and queries["answered"] >= 2, queries
    # Docker's embedded DNS asks the host's resolvers from this namespace; had the rules
    # caught those, each would come back here and loop until dropped
    assert queries["dropped"] == 0 and queries["forwarded"] < 50, queries
