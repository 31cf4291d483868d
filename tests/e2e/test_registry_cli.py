"""`gossamer registry list --store etcd://...` against a real etcd, and a clear error
when etcd is not there."""

from __future__ import annotations

import json

import pytest

from gossamer.contract.identity import ServiceKey
from gossamer.discovery.etcd import EtcdStore
from gossamer.discovery.model import Endpoint, Service
from gossamer.discovery.registry import Registry
from tests.helpers.etcd import EtcdCluster, free_port
from tests.helpers.procs import run_gossamer

pytestmark = pytest.mark.e2e


async def test_list_shows_live_registrations(etcd_server: EtcdCluster) -> None:
    port = etcd_server.members[0].client_port
    store = EtcdStore([("127.0.0.1", port)], prefix="/cli")
    await store.start()
    registry = Registry(store)
    await registry.sync_static([Service("catalog")], [])
    reg = await registry.register(
        Endpoint(ServiceKey("default", "catalog"), "pod-7", "10.0.0.7", 15006, mtls=True), ttl=30
    )
    url = f"etcd://127.0.0.1:{port}/cli"
    result = run_gossamer("registry", "list", "--store", url, "-o", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    [endpoint] = data["endpoints"]
    assert endpoint["instance_id"] == "pod-7" and endpoint["owner"] == f"lease:{reg.lease}"
    assert data["revision"] >= reg.revision
    table = run_gossamer("registry", "list", "--store", url)
    assert "pod-7" in table.stdout and "10.0.0.7:15006" in table.stdout
    await registry.close()
    await store.close()


def test_unreachable_etcd_is_one_clear_error() -> None:
    result = run_gossamer("registry", "list", "--store", f"etcd://127.0.0.1:{free_port()}")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: etcd at 127.0.0.1:")
    assert "unreachable" in result.stderr and "hint:" in result.stderr
