"""mesh.yaml of `gossamer up`: accepted by the control plane's own parser, with the
policies the demo shows."""

from __future__ import annotations

from pathlib import Path

from gossamer.contract.identity import ServiceKey
from gossamer.control.config import load_mesh
from gossamer.discovery.mesh_services import parse_services
from gossamer.up.demo_mesh_yaml import mesh_yaml, spiffe
from gossamer.up.layout import FreePorts, Subnet, isolated_layout, loopback_layout


def test_loopback_mesh_file_parses_with_listeners_and_policies(tmp_path: Path):
    ports = FreePorts()
    layout = loopback_layout(ports)
    ports.release()
    path = tmp_path / "mesh.yaml"
    path.write_text(mesh_yaml(layout, jaeger_url="http://127.0.0.1:16686"))
    root, mesh = load_mesh(path)
    declared = parse_services(root)
    assert sorted(s.name for s in declared.services) == ["catalog", "inventory", "web"]
    assert all(
        [(p.port, p.protocol) for p in s.ports] == [(8080, "http")] for s in declared.services
    )
    assert declared.endpoints == ()  # every instance registers through its sidecar
    control = mesh.control
    assert (control.xds_listen.host, control.xds_listen.port) == ("127.0.0.1", layout.control.xds)
    assert control.bootstrap_listen.port == layout.control.bootstrap
    assert control.api_listen.port == layout.control.api
    assert control.ca_dir == tmp_path / "ca" and control.data_dir == tmp_path / "data"
    assert mesh.observability.jaeger_url == "http://127.0.0.1:16686"
    web = mesh.policy_for(ServiceKey("default", "web"))
    assert web.allows(spiffe("loadgen")) and not web.allows(spiffe("catalog"))
    catalog = mesh.policy_for(ServiceKey("default", "catalog"))
    assert catalog.lb_policy == "least_request"
    assert catalog.allows(spiffe("web")) and not catalog.allows(spiffe("loadgen"))
    inventory = mesh.policy_for(ServiceKey("default", "inventory"))
    assert inventory.retries is not None and 503 in inventory.retries.status_codes
    assert inventory.allows(spiffe("catalog")) and not inventory.allows(spiffe("web"))


def test_isolated_mesh_file_listens_on_the_control_planes_address(tmp_path: Path):
    layout = isolated_layout(Subnet("10.213.4"), "77")
    path = tmp_path / "mesh.yaml"
    path.write_text(mesh_yaml(layout))
    control = load_mesh(path)[1].control
    assert str(control.xds_listen) == "10.213.4.2:15012"
    assert str(control.bootstrap_listen) == "10.213.4.2:15011"
    assert str(control.api_listen) == "10.213.4.2:15014"
