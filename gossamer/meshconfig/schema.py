"""mesh.yaml's one schema: every section and field, declared once.

The parsers (control/config.py, policy.py, resilience.py, discovery/mesh_services.py,
gossamer/observe/settings.py) check keys against these sections and take defaults and
bounds from these fields; `reference.py` renders them as the README's mesh.yaml
reference. A key a parser reads must be declared here, or the parser refuses it.
"""

from __future__ import annotations

from gossamer.contract.identity import DEFAULT_NAMESPACE
from gossamer.contract.ports import API_PORT, BOOTSTRAP_PORT, XDS_PORT
from gossamer.contract.vocabulary import GrpcRetryOn, HttpRetryOn, LbPolicy, Protocol
from gossamer.meshconfig.fields import Field, Section

LB_POLICIES = tuple(p.value for p in LbPolicy)
PROTOCOLS = tuple(p.value for p in Protocol)
RETRY_CONDITIONS = tuple(c.value for c in HttpRetryOn) + tuple(c.value for c in GrpcRetryOn)
MAX_RETRY_ATTEMPTS = 10
DEFAULT_TRUST_DOMAIN = "gossamer.local"
HTTP_SD_MODES = ("token", "open")
MAX_TTL_CAP = 30 * 86400  # the highest control.max_token_ttl / max_cert_ttl (30 days)

# -- control ------------------------------------------------------------------------------
CONTROL = Section(
    "control",
    "The control plane's listeners, CA, data and registry store; they apply at start.",
    (
        Field(
            "xds_listen",
            "host:port",
            "mutual TLS: ADS, registration, certificate renewal",
            f"0.0.0.0:{XDS_PORT}",
        ),
        Field(
            "bootstrap_listen",
            "host:port",
            "server-auth TLS: a new sidecar's first certificate (join token)",
            f"0.0.0.0:{BOOTSTRAP_PORT}",
        ),
        Field(
            "insecure_xds_listen",
            "host:port",
            "plaintext ADS for local proxyless gRPC clients (warns at start)",
            default_doc="off",
        ),
        Field(
            "api_listen",
            "host:port",
            "operator API, dashboard, /metrics, Prometheus http_sd",
            f"127.0.0.1:{API_PORT}",
        ),
        Field(
            "ca_dir",
            "path",
            "the mesh CA; created on first start if empty (relative: to the file)",
            ".gossamer/ca",
        ),
        Field(
            "data_dir",
            "path",
            "embedded registry, API tokens, audit log (relative: to the file)",
            ".gossamer/data",
        ),
        Field(
            "store",
            "store URL",
            "the registry store: embedded, or etcd://HOST:PORT,...[/prefix]",
            "embedded",
        ),
        Field(
            "lease_ttl",
            "duration",
            "a vanished sidecar's endpoint leaves after this; also the wait for "
            "re-registrations after a restart",
            "10s",
            minimum=1,
            maximum=3600,
        ),
        Field(
            "max_token_ttl",
            "duration",
            "the longest join token the operator API and `gossamer token create` make; "
            "a longer ttl is refused",
            "24h",
            minimum=60,
            maximum=MAX_TTL_CAP,
        ),
        Field(
            "max_cert_ttl",
            "duration",
            "the longest leaf certificate issued to a sidecar (also its default); a "
            "longer requested lifetime is cut to it",
            "24h",
            minimum=60,
            maximum=MAX_TTL_CAP,
        ),
    ),
)

# -- services[]: discovery ----------------------------------------------------------------
PORT = Section(
    "services[].ports[]",
    "A port of the service; a bare number is that port with protocol http.",
    (
        Field("port", "integer", "the port number", required=True, minimum=1, maximum=65535),
        Field("protocol", "choice", "how the mesh carries it", "http", choices=PROTOCOLS),
        Field("name", "DNS-1123 label", "a name for the port", "", default_doc="none"),
    ),
)
ENDPOINT = Section(
    "services[].endpoints[]",
    "A static endpoint: an instance without a sidecar (plain traffic, owner `static`).",
    (
        Field("address", "IP address or host name", "where the instance listens", required=True),
        Field("port", "integer", "its port", required=True, minimum=1, maximum=65535),
        Field("zone", "string", "locality zone", "", default_doc="none"),
        Field("node", "string", "the host it runs on", "", default_doc="none"),
        Field("weight", "integer", "load-balancing weight", 1, minimum=1, maximum=128),
        Field("labels", "mapping", "string or number labels", default_doc="none"),
        Field(
            "instance_id",
            "string",
            "the instance's id (1-253 characters)",
            default_doc="static-ADDRESS-PORT",
        ),
        Field(
            "service_ports", "list of integers", "the service ports it serves", default_doc="all"
        ),
    ),
)
DISCOVERY_FIELDS = (
    Field("name", "DNS-1123 label", "the service's name", required=True),
    Field("namespace", "DNS-1123 label", "the service's namespace", DEFAULT_NAMESPACE),
    Field("ports", "list of mappings", "the service's ports", section=PORT, default_doc="none"),
    Field(
        "endpoints",
        "list of mappings",
        "static endpoints; sidecars also register themselves",
        section=ENDPOINT,
        default_doc="none",
    ),
)

# -- services[]: policy -------------------------------------------------------------------
RETRIES = Section(
    "services[].retries",
    "Retries by the calling sidecar.",
    (
        Field(
            "attempts",
            "integer",
            "retries after the first try",
            required=True,
            minimum=0,
            maximum=MAX_RETRY_ATTEMPTS,
        ),
        Field(
            "per_try_timeout",
            "duration",
            "timeout of each try (longer than 0s)",
            default_doc="none",
        ),
        Field(
            "on",
            "list",
            "retry conditions: " + ", ".join(RETRY_CONDITIONS) + ", or HTTP statuses 100-599",
            ["connect-failure", "refused-stream", "unavailable"],
            choices=RETRY_CONDITIONS,
        ),
        Field(
            "budget_percent",
            "number",
            "retries at most this % of active requests",
            minimum=0,
            maximum=100,
            default_doc="no budget",
        ),
    ),
)
AUTHORIZATION = Section(
    "services[].authorization",
    "Who may call the service; absent, every mesh identity may.",
    (
        Field(
            "allow",
            "list of SPIFFE IDs",
            "spiffe://TRUST_DOMAIN/ns/NS/sa/NAME; * as NAME (or NS and NAME) matches all",
            required=True,
        ),
    ),
)
SUCCESS_RATE = Section(
    "services[].outlier_detection.success_rate",
    "Success-rate ejection: an endpoint below mean - stdev_factor x stdev is ejected.",
    (
        Field(
            "minimum_hosts",
            "integer",
            "endpoints with enough requests needed to judge",
            5,
            minimum=1,
        ),
        Field(
            "request_volume",
            "integer",
            "requests in an interval for an endpoint to count",
            100,
            minimum=1,
        ),
        Field(
            "stdev_factor",
            "number",
            "how many standard deviations below the mean",
            1.9,
            minimum=0.1,
            maximum=10,
        ),
    ),
)
OUTLIER = Section(
    "services[].outlier_detection",
    "Passive health: eject endpoints that fail (Envoy's semantics and defaults).",
    (
        Field(
            "consecutive_5xx",
            "integer",
            "eject after this many 5xx in a row (0: off)",
            5,
            minimum=0,
        ),
        Field(
            "consecutive_gateway_errors",
            "integer",
            "eject after this many 502/503/504 in a row (0: off)",
            0,
            minimum=0,
        ),
        Field("interval", "duration", "how often ejections are evaluated", "5s"),
        Field(
            "base_ejection_time",
            "duration",
            "the first ejection; each further one is longer",
            "30s",
        ),
        Field("max_ejection_time", "duration", "the longest ejection", "300s"),
        Field(
            "max_ejection_percent",
            "integer",
            "never eject more than this % of endpoints",
            50,
            minimum=0,
            maximum=100,
        ),
        Field(
            "success_rate",
            "mapping",
            "success-rate ejection",
            section=SUCCESS_RATE,
            default_doc="off",
        ),
        Field(
            "panic_threshold",
            "number",
            "below this % healthy, balance over all endpoints",
            50.0,
            minimum=0,
            maximum=100,
        ),
    ),
)
BREAKERS = Section(
    "services[].circuit_breakers",
    "Limits per calling sidecar (Envoy's circuit-breaker thresholds).",
    tuple(
        Field(name, "integer", doc, minimum=1, maximum=1_000_000, default_doc="the sidecar's")
        for name, doc in (
            ("max_connections", "connections to the service"),
            ("max_pending_requests", "requests waiting for a connection"),
            ("max_requests", "requests in flight"),
            ("max_retries", "retries in flight"),
        )
    ),
)
HEALTH = Section(
    "services[].health_check",
    "Active health checks by every calling sidecar: exactly one of http_path or tcp: true.",
    (
        Field(
            "http_path",
            "string",
            "HTTP GET this path (starts with /); 200 passes",
            default_doc="none",
        ),
        Field("tcp", "boolean", "a TCP connect check instead", False),
        Field("interval", "duration", "time between checks", "5s"),
        Field("timeout", "duration", "a check's timeout (at most interval)", "1s"),
        Field(
            "unhealthy_threshold",
            "integer",
            "failed checks in a row to mark unhealthy",
            3,
            minimum=1,
            maximum=100,
        ),
        Field(
            "healthy_threshold",
            "integer",
            "passed checks in a row to mark healthy again",
            2,
            minimum=1,
            maximum=100,
        ),
    ),
)
POLICY_FIELDS = (
    Field(
        "lb_policy",
        "choice",
        "how callers pick an endpoint",
        LbPolicy.ROUND_ROBIN.value,
        choices=LB_POLICIES,
    ),
    Field(
        "hash_header",
        "HTTP header name",
        "ring_hash only: the request header hashed",
        default_doc="none",
    ),
    Field("timeout", "duration", "whole-request timeout (0 disables it)", default_doc="none"),
    Field(
        "stream_idle_timeout",
        "duration",
        "a request with no byte received or sent for this long is cut (408 before the "
        "answer starts, else reset): the service's sidecar for its callers' requests, "
        "callers' sidecars for theirs to it (0 disables it)",
        "60s",
        minimum=0,
        maximum=86400,
    ),
    Field(
        "request_timeout",
        "duration",
        "a request's head and body must have arrived within this unless the answer has "
        "started (else 408): the service's sidecar for its callers' requests and its own "
        "app's (0 disables it)",
        "60s",
        minimum=0,
        maximum=86400,
    ),
    Field("retries", "mapping", "retry policy", section=RETRIES, default_doc="no retries"),
    Field(
        "authorization",
        "mapping",
        "allowed callers",
        section=AUTHORIZATION,
        default_doc="every mesh identity",
    ),
    Field("outlier_detection", "mapping", "passive health", section=OUTLIER, default_doc="off"),
    Field(
        "circuit_breakers",
        "mapping",
        "connection and request limits",
        section=BREAKERS,
        default_doc="the sidecar's",
    ),
    Field("health_check", "mapping", "active health checks", section=HEALTH, default_doc="off"),
)
SERVICE = Section(
    "services[]",
    "A service: its discovery fields (the registry) and its traffic policy (the control plane).",
    DISCOVERY_FIELDS + POLICY_FIELDS,
)

# -- observability ------------------------------------------------------------------------
OBSERVABILITY = Section(
    "observability",
    "Where `gossamer stat/edges/top` and the dashboard find metrics and traces, and who may "
    "list the sidecars for Prometheus; read at start.",
    (
        Field(
            "prometheus_url",
            "http(s) URL",
            "read figures with PromQL here (absent: from the sidecars through the control plane)",
            default_doc="none",
        ),
        Field(
            "jaeger_url",
            "http(s) URL",
            "the dashboard links each service's traces here",
            default_doc="none",
        ),
        Field(
            "certificate_warning",
            "duration",
            "warn when a certificate is this close to expiry",
            "6h",
        ),
        Field("window", "duration", "the default rate window (at least 2s)", "1m", minimum=2),
        Field(
            "history",
            "duration",
            "how long the control plane keeps the golden metrics of every service and edge "
            "(`/v1/series`, `gossamer series`, the dashboard's charts) when there is no "
            "`prometheus_url`; `off` or 0: none, and no periodic scraping",
            "1h",
            maximum=86400,
        ),
        Field(
            "history_step",
            "duration",
            "the history's resolution: the control plane scrapes every sidecar this often "
            "(at most 8640 points a series: history / history_step)",
            "10s",
            minimum=1,
            maximum=300,
        ),
        Field(
            "http_sd",
            "choice",
            "who may read `/v1/http_sd` (every sidecar's address and metrics port): "
            "`token`, a caller with a viewer API token (Bearer); `open`, anyone who "
            "reaches `api_listen`",
            "token",
            choices=HTTP_SD_MODES,
        ),
        Field(
            "prometheus_token_file",
            "path",
            "a file whose content the control plane accepts as a viewer API token named "
            "`prometheus` (Prometheus's `credentials_file`), re-read when it changes "
            "(relative: to the file)",
            default_doc="none",
        ),
    ),
)

# -- the file -----------------------------------------------------------------------------
MESH = Section(
    "",
    "The top level of mesh.yaml.",
    (
        Field(
            "trust_domain",
            "string",
            "the SPIFFE trust domain of every identity",
            DEFAULT_TRUST_DOMAIN,
        ),
        Field("control", "mapping", "the control plane", section=CONTROL, default_doc="defaults"),
        Field("services", "list of mappings", "the services", section=SERVICE, default_doc="none"),
        Field(
            "observability",
            "mapping",
            "metrics and traces",
            section=OBSERVABILITY,
            default_doc="defaults",
        ),
    ),
)

# The key lists the parsers check mappings against.
TOP_LEVEL_KEYS = MESH.keys
CONTROL_KEYS = CONTROL.keys
SERVICE_DISCOVERY_KEYS = tuple(f.name for f in DISCOVERY_FIELDS)
POLICY_KEYS = tuple(f.name for f in POLICY_FIELDS)
SERVICE_KEYS = SERVICE.keys
PORT_KEYS = PORT.keys
ENDPOINT_KEYS = ENDPOINT.keys
RETRY_KEYS = RETRIES.keys
AUTHORIZATION_KEYS = AUTHORIZATION.keys
OUTLIER_KEYS = OUTLIER.keys
SUCCESS_RATE_KEYS = SUCCESS_RATE.keys
BREAKER_KEYS = BREAKERS.keys
HEALTH_KEYS = HEALTH.keys
OBSERVABILITY_KEYS = OBSERVABILITY.keys
