"""Readiness probes and the request through the mesh (blocking, small timeouts).

The request through the mesh enters at the load generator's sidecar, as the load
generator's own requests do: in the loopback shape by using that sidecar's outbound
port as an HTTP proxy, in the isolated shape by running a tiny client inside the load
generator's namespace, where iptables hands its connection to the sidecar (with
`--nodes`, that client uses the sidecar as its HTTP proxy). The answer
of `web` lists the instance that served each hop (web, catalog, inventory), so one
successful answer proves the whole chain, each hop over mutual TLS between sidecars.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from gossamer.up import nodes
from gossamer.up.layout import SERVICE_PORT, ControlPlaneAddress, Instance, Layout, Node

ENTRY_URL = f"http://web:{SERVICE_PORT}/"

_CLIENT = """
import json, sys, urllib.request, urllib.error
proxies = {"http": sys.argv[3]} if len(sys.argv) > 3 else {}
opener = urllib.request.build_opener(urllib.request.ProxyHandler(proxies))
try:
    with opener.open(sys.argv[1], timeout=float(sys.argv[2])) as r:
        print(json.dumps([r.status, r.read().decode("utf-8", "replace")]))
except urllib.error.HTTPError as e:
    print(json.dumps([e.code, e.read().decode("utf-8", "replace")]))
"""


# the probes talk to the mesh's own addresses: never through a proxy from the environment
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(url: str, *, token: str | None = None, timeout: float = 2.0) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - http only
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def get_json(url: str, *, token: str | None = None, timeout: float = 2.0) -> Any:
    status, body = http_get(url, token=token, timeout=timeout)
    if status != 200:
        raise OSError(f"{url}: HTTP {status}")
    return json.loads(body)


def control_ready(layout: Layout) -> bool:
    return replica_ready(layout.control)


def replica_ready(control: ControlPlaneAddress) -> bool:
    return http_get(f"{control.api_url}/healthz")[0] == 200


def etcd_ready(node: Node) -> bool:
    """The node's etcd member answers /health with a leader elected."""
    status, body = http_get(f"http://{node.address}:{nodes.ETCD_CLIENT_PORT}/health")
    return status == 200 and json.loads(body).get("health") == "true"


def gateway_ready(node: Node) -> bool:
    """The node gateway's /ready (its admin port is on 127.0.0.1 in the node)."""
    url = f"http://127.0.0.1:{nodes.GATEWAY_ADMIN_PORT}/ready"
    try:
        return _get_in_netns(node.netns, url, 2.0)[0] == 200
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return False


def sidecar_ready(instance: Instance) -> bool:
    """The sidecar's admin `/ready`: it listens on 127.0.0.1, so in the isolated shape
    it is asked from inside the instance's namespace."""
    url = f"http://127.0.0.1:{instance.sidecar.admin}/ready"
    if instance.netns is None:
        return http_get(url)[0] == 200
    try:
        return _get_in_netns(instance.netns, url, 2.0)[0] == 200
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return False


@dataclass(frozen=True)
class MeshAnswer:
    status: int
    body: str

    @property
    def data(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def path(self) -> list[Any]:
        data = self.data
        return list(data.get("path", [])) if isinstance(data, dict) else []

    @property
    def complete(self) -> bool:
        """200 with every hop named: web, a catalog replica, inventory."""
        return self.status == 200 and len(self.path) == 3 and all(self.path)


def through_mesh(layout: Layout, *, timeout: float = 3.0) -> MeshAnswer:
    """GET http://web:8080/ entering the mesh at the load generator's sidecar."""
    entry = layout.entry
    if entry.netns is None:
        conn = http.client.HTTPConnection(entry.address, entry.sidecar.outbound, timeout=timeout)
        try:
            conn.request("GET", ENTRY_URL, headers={"Host": f"web:{SERVICE_PORT}"})
            response = conn.getresponse()
            return MeshAnswer(response.status, response.read().decode("utf-8", "replace"))
        finally:
            conn.close()
    proxy = f"http://127.0.0.1:{entry.sidecar.outbound}" if layout.nodes else None
    status, body = _get_in_netns(entry.netns, ENTRY_URL, timeout, proxy)
    return MeshAnswer(status, body)


def _get_in_netns(
    netns: str, url: str, timeout: float, proxy: str | None = None
) -> tuple[int, str]:
    """GET `url` from a tiny client inside `netns` (through `proxy`): (status, body)."""
    extra = [proxy] if proxy else []
    result = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", _CLIENT, url, str(timeout), *extra],
        capture_output=True,
        text=True,
        timeout=timeout + 10,
    )
    if result.returncode != 0:
        raise OSError(result.stderr.strip().splitlines()[-1] if result.stderr else "client failed")
    status, body = json.loads(result.stdout)
    return int(status), str(body)


def curl_command(layout: Layout) -> str:
    """What to paste into a shell to send one request through the mesh."""
    entry = layout.entry
    if entry.netns is None:
        return f"curl -x http://{entry.address}:{entry.sidecar.outbound} {ENTRY_URL}"
    if layout.nodes:
        proxy = f"http://127.0.0.1:{entry.sidecar.outbound}"
        return f"sudo ip netns exec {entry.netns} curl -s -x {proxy} {ENTRY_URL}"
    return f"sudo ip netns exec {entry.netns} curl -s {ENTRY_URL}"
