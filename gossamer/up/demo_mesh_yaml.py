"""The control plane's mesh.yaml for `gossamer up` (pure: layout in, text out).

The policies make the demo show what the mesh does: each service accepts only its
caller's identity (loadgen -> web -> catalog -> inventory), catalog's two replicas
share the load (least request), and inventory's occasional 503s are retried by the
calling sidecar within a budget, so the success rate seen by web stays high while
inventory's own is visibly lower.

With `--nodes` every node's replica gets its own mesh.yaml (`store` set): its own
addresses, its own CA directory (an intermediate) and data directory beside the file,
and the shared etcd store; the services and policies are the same.
"""

from __future__ import annotations

import json

from gossamer.up.layout import (
    NAMESPACE,
    SERVICE_PORT,
    TRUST_DOMAIN,
    UPSTREAM,
    ControlPlaneAddress,
    Layout,
)

CA_DIR = "ca"
DATA_DIR = "data"
LEASE_TTL = "5s"

_POLICY = {
    "web": ["    timeout: 5s"],
    "catalog": [
        "    lb_policy: least_request",
        "    timeout: 3s",
        "    retries: {attempts: 2, per_try_timeout: 1s, on: [connect-failure, reset, 502, 503]}",
    ],
    "inventory": [
        "    timeout: 2s",
        "    retries: {attempts: 2, per_try_timeout: 500ms, on: [connect-failure, reset, 503],"
        " budget_percent: 50}",
    ],
}


def spiffe(service: str) -> str:
    return f"spiffe://{TRUST_DOMAIN}/ns/{NAMESPACE}/sa/{service}"


def _q(text: str) -> str:
    return json.dumps(text)


def callers_of(service: str) -> list[str]:
    return sorted(caller for caller, callee in UPSTREAM.items() if callee == service)


def mesh_yaml(
    layout: Layout,
    *,
    jaeger_url: str | None = None,
    control: ControlPlaneAddress | None = None,
    store: str = "embedded",
) -> str:
    """The control plane's mesh.yaml; with `control` and `store`: one replica's."""
    control = control or layout.control
    lines = [
        "# Written by `gossamer up` for this run (the state directory is fresh every run).",
        f"trust_domain: {TRUST_DOMAIN}",
        "control:",
        f"  xds_listen: {_q(f'{control.address}:{control.xds}')}",
        f"  bootstrap_listen: {_q(f'{control.address}:{control.bootstrap}')}",
        f"  api_listen: {_q(f'{control.address}:{control.api}')}",
        f"  ca_dir: {CA_DIR}",
        f"  data_dir: {DATA_DIR}",
        f"  store: {_q(store) if store != 'embedded' else store}",
        f"  lease_ttl: {LEASE_TTL}",
        "services:",
    ]
    for service in ("web", "catalog", "inventory"):
        allowed = ", ".join(spiffe(c) for c in callers_of(service))
        lines += [
            f"  - name: {service}",
            f"    namespace: {NAMESPACE}",
            f"    ports: [{{port: {SERVICE_PORT}, protocol: http}}]",
            *_POLICY[service],
            f"    authorization: {{allow: [{allowed}]}}",
        ]
    lines += ["observability:", "  window: 30s"]
    if jaeger_url:
        lines.append(f"  jaeger_url: {_q(jaeger_url)}")
    return "\n".join(lines) + "\n"
