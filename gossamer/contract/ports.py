"""Well-known ports: a sidecar's listeners and the control plane's listeners.

Istio's numbers, so operators who know Istio recognise them. Every one can be changed
by a flag or a mesh.yaml field; these are the defaults both sides assume.

A sidecar's admin port (`/config_dump` shows its policies and endpoints) listens on
127.0.0.1 by default: only its own network namespace reaches it (Compose health
checks run there). Prometheus and the control plane scrape the metrics port instead,
which listens on every interface and serves `GET /metrics` only (as Envoy's 15090 in
Istio); transparent mode leaves it out of inbound interception.
"""

from __future__ import annotations

# The sidecar
OUTBOUND_PORT = 15001  # the app's requests to the mesh (HTTP proxy, Host, iptables)
INBOUND_PORT = 15006  # mutual TLS from peer sidecars
ADMIN_PORT = 15000  # /ready, /live, /metrics, /config_dump, /clusters (127.0.0.1)
METRICS_PORT = 15090  # GET /metrics only, for Prometheus and the control plane
DNS_PORT = 15053  # the app's DNS (transparent mode, UDP and TCP, 127.0.0.1): mesh names

# The control plane
BOOTSTRAP_PORT = 15011  # join tokens for a first certificate (pinned TLS)
XDS_PORT = 15012  # ADS, identity and registration over mutual TLS
API_PORT = 15014  # the operator HTTP API and the dashboard
