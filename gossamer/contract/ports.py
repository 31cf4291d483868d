"""Well-known ports: a sidecar's listeners and the control plane's listeners.

Istio's numbers, so operators who know Istio recognise them. Every one can be changed
by a flag or a mesh.yaml field; these are the defaults both sides assume.
"""

from __future__ import annotations

# The sidecar
OUTBOUND_PORT = 15001  # the app's requests to the mesh (HTTP proxy, Host, iptables)
INBOUND_PORT = 15006  # mutual TLS from peer sidecars
ADMIN_PORT = 15000  # /ready, /live, /metrics, /config_dump, /clusters

# The control plane
BOOTSTRAP_PORT = 15011  # join tokens for a first certificate (pinned TLS)
XDS_PORT = 15012  # ADS, identity and registration over mutual TLS
API_PORT = 15014  # the operator HTTP API and the dashboard
