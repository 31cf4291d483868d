"""Names `gossamer inject` gives to what it adds: services, secrets, configs, files.

One place, so the rewrite, the bootstrap files, the validation and the tests agree.
Bootstrap paths are relative to the compose file's directory (Compose resolves
`secrets: file:` and `configs: file:` against the project directory).
"""

from __future__ import annotations

EXTENSION = "x-gossamer"  # per-service settings, and the top-level marker block
DEFAULT_IMAGE = "gossamer:latest"
CONTROL = "gossamer-control"
GATEWAY = "gossamer-gateway"  # --node: the node gateway (its token: tokens/GATEWAY.token)
BOOTSTRAP = "gossamer-bootstrap"  # --bootstrap volumes: makes the CA and tokens at `up`
JAEGER = "jaeger"
PROMETHEUS = "prometheus"
JAEGER_IMAGE = "jaegertracing/jaeger:2.13.0"
PROMETHEUS_IMAGE = "prom/prometheus:v3.5.0"

BOOTSTRAP_DIR = ".gossamer"
CA_SECRET = "gossamer-ca"
CA_DIR = f"{BOOTSTRAP_DIR}/ca"
MESH_CONFIG = "gossamer-mesh"
MESH_FILE = f"{BOOTSTRAP_DIR}/mesh.yaml"
PROMETHEUS_CONFIG = "gossamer-prometheus"
PROMETHEUS_FILE = f"{BOOTSTRAP_DIR}/prometheus.yml"
# with --with-observability: the viewer API token Prometheus reads /v1/http_sd with
PROMETHEUS_TOKEN_SECRET = "gossamer-prometheus-token"
PROMETHEUS_TOKEN_FILE = f"{BOOTSTRAP_DIR}/prometheus.token"
PROMETHEUS_UID = 65534  # `nobody`, the user the prom/prometheus image runs as

# --bootstrap volumes: named volumes instead of files on the host
CA_VOLUME = "gossamer-ca"
CONTAINER_TOKEN_DIR = "/run/gossamer/token"  # a sidecar's token volume, read-only
BOOTSTRAP_TOKENS_DIR = "/etc/gossamer/tokens"  # every token volume, in gossamer-bootstrap
PROMETHEUS_TOKEN_VOLUME = "gossamer-prometheus-token"
BOOTSTRAP_PROMETHEUS_DIR = "/etc/gossamer/prometheus"  # that volume, in gossamer-bootstrap

# inside the containers
CONTAINER_MESH_FILE = "/etc/gossamer/mesh.yaml"
CONTAINER_CA_DIR = "/etc/gossamer/ca"
CONTAINER_DATA_DIR = "/var/lib/gossamer"
# a sidecar's state directory: its certificate, key and last accepted configuration, on
# a tmpfs volume (kept across container restarts, gone with a host reboot)
CONTAINER_STATE_DIR = "/run/gossamer/state"
CONTAINER_PROMETHEUS_FILE = "/etc/prometheus/prometheus.yml"
# the Prometheus token, read-only in gossamer-control and prometheus (both bootstraps)
CONTAINER_PROMETHEUS_TOKEN_DIR = "/run/gossamer/prometheus"
CONTAINER_PROMETHEUS_TOKEN = f"{CONTAINER_PROMETHEUS_TOKEN_DIR}/token"


def netns(service: str) -> str:
    """The namespace owner: holds the service's ports, networks and aliases."""
    return f"{service}-netns"


def init(service: str) -> str:
    """The one-shot container that installs the iptables rules (transparent mode)."""
    return f"{service}-init"


def proxy(service: str) -> str:
    """The sidecar."""
    return f"{service}-proxy"


def token_secret(service: str) -> str:
    return f"gossamer-token-{service}"


def token_file(service: str) -> str:
    return f"{BOOTSTRAP_DIR}/tokens/{service}.token"


def join_token_name(service: str, namespace: str = "default", index: int | None = None) -> str:
    """A join token's file name in a token directory (`token create --output-dir`, `inject
    --join --token-dir`): `S.token`, `S.NAMESPACE.token` outside namespace default, with
    `-I` after S for the I-th of `--count N`."""
    stem = service if index is None else f"{service}-{index}"
    return f"{stem}.token" if namespace == "default" else f"{stem}.{namespace}.token"


def container_token_file(service: str, bootstrap: str = "files") -> str:
    if bootstrap == "volumes":
        return f"{CONTAINER_TOKEN_DIR}/token"
    return f"/run/secrets/{token_secret(service)}"


def token_volume(service: str) -> str:
    """--bootstrap volumes: the volume holding one sidecar's join token."""
    return f"gossamer-token-{service}"


def state_volume(service: str) -> str:
    """The tmpfs volume holding one sidecar's state directory (`--state-dir`)."""
    return f"gossamer-state-{service}"


def per_service(service: str) -> tuple[str, ...]:
    """The services added for one meshed service."""
    return (netns(service), init(service), proxy(service))


def shared_services(observability: bool, bootstrap: str = "files") -> tuple[str, ...]:
    """The services added once per file."""
    added = (CONTROL, JAEGER, PROMETHEUS) if observability else (CONTROL,)
    return (*added, BOOTSTRAP) if bootstrap == "volumes" else added


# Keys that describe a container's network namespace: they move to the namespace owner
# (Docker refuses them on a container that joins another one's namespace)
NETWORK_KEYS = (
    "networks",
    "ports",
    "expose",
    "hostname",
    "domainname",
    "dns",
    "dns_search",
    "dns_opt",
    "extra_hosts",
    "mac_address",
    "links",
    "external_links",
)
