"""The Compose definitions of the services `gossamer inject` adds.

Shape (Kuma's universal-mode pattern; docs/architecture.md, "Compose integration"), for a
meshed service S:

- `S-netns` owns the network namespace: it takes S's ports, networks (with the alias
  `S`, so the rest of the file still reaches S by name), expose, hostname and DNS
  settings, and sleeps. Compose forbids those keys beside `network_mode: service:X`.
- `S-init` (transparent mode) joins that namespace with NET_ADMIN/NET_RAW, installs
  the iptables redirection once and exits; the sidecar waits for it to succeed. The
  app's DNS (port 53) goes to the sidecar's DNS on 127.0.0.1:15053 too, which answers
  for mesh services on other nodes and forwards the rest to Docker's DNS
  (`--no-dns-capture`: not).
- `S-proxy` is the sidecar, in the same namespace, running as UID 1337 (the UID the
  iptables rules exempt), with its join token as a Compose secret and its state
  directory (`--state-dir`: certificate, key, last configuration) on a tmpfs volume
  `gossamer-state-S` that survives container restarts; it is healthy once
  its admin `/ready` answers (the admin port listens on 127.0.0.1: the health check
  runs in the namespace). Prometheus scrapes its metrics port (15090, `/metrics` only),
  which the iptables rules leave alone.
- S itself gets `network_mode: service:S-netns` and waits for `S-proxy` to be healthy.

A service on `network_mode: host` keeps it; its sidecar runs on the host network
beside it (explicit mode: the host's iptables are never touched) and reaches the
control plane through a port published on 127.0.0.1.

Every command and port of the sidecar and control plane CLIs used by the generated
file is in this module, so a change to those CLIs is one edit here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from gossamer.compose import multinode, names
from gossamer.compose.options import InjectOptions
from gossamer.compose.plan import Plan, ServicePlan
from gossamer.contract.ports import (
    ADMIN_PORT,
    API_PORT,
    DNS_PORT,
    INBOUND_PORT,
    METRICS_PORT,
    OUTBOUND_PORT,
    XDS_PORT,
)

PROXY_UID = 1337
READY_PATH = "/ready"
HEALTH_PATH = "/healthz"
JAEGER_UI_PORT = 16686
OTLP_GRPC_PORT = 4317
PROMETHEUS_PORT = 9090
DEFAULT_TRUST_DOMAIN = "gossamer.local"


def _q(text: str) -> DoubleQuotedScalarString:
    """A string Compose must not read as a number or a YAML 1.1 sexagesimal."""
    return cast(DoubleQuotedScalarString, DoubleQuotedScalarString(text))


def _flow(items: Iterable[Any]) -> CommentedSeq:
    seq = CommentedSeq(items)
    seq.fa.set_flow_style()
    return seq


def _block(items: Iterable[Any]) -> CommentedSeq:
    return CommentedSeq(items)


def condition(kind: str) -> CommentedMap:
    return CommentedMap([("condition", kind)])


def _profiles(target: CommentedMap, sp: ServicePlan) -> None:
    if sp.profiles:
        target["profiles"] = _flow(sp.profiles)


def publish(host_port: int, container_port: int, plan: Plan, notes: list[str]) -> str | None:
    """`127.0.0.1:H:C`, unless the user's file already publishes host port H."""
    if host_port in plan.taken_host_ports:
        notes.append(
            f"host port {host_port} is already published by the file; "
            f"port {container_port} of the added service is not published"
        )
        return None
    return f"127.0.0.1:{host_port}:{container_port}"


def proxy_env_values(sp: ServicePlan) -> dict[str, str]:
    """What explicit mode puts in the app's environment: the sidecar as HTTP proxy."""
    url = f"http://127.0.0.1:{OUTBOUND_PORT + sp.port_offset}"
    local = "localhost,127.0.0.1,::1"
    return {"HTTP_PROXY": url, "http_proxy": url, "NO_PROXY": local, "no_proxy": local}


def netns_owner(sp: ServicePlan, options: InjectOptions) -> CommentedMap:
    """`S-netns`; the rewrite then moves S's network keys into it."""
    owner = CommentedMap()
    owner["image"] = options.image
    owner["entrypoint"] = _flow(["sleep"])
    owner["command"] = _flow(["infinity"])
    owner["init"] = True  # a PID 1 that stops on SIGTERM
    owner["user"] = _q(f"{PROXY_UID}:{PROXY_UID}")
    # Docker unmounts a tmpfs volume when the last container using it stops: holding
    # the sidecar's state volume here keeps it across the sidecar's restarts
    owner["volumes"] = _block([f"{names.state_volume(sp.name)}:{names.CONTAINER_STATE_DIR}:ro"])
    owner["restart"] = "unless-stopped"
    _profiles(owner, sp)
    return owner


def iptables_command(sp: ServicePlan, dns_capture: bool = True) -> list[str]:
    """The init container's arguments (after the `gossamer` entrypoint)."""
    args = [
        "proxy",
        "iptables",
        "install",
        "--proxy-uid",
        str(PROXY_UID),
        "--inbound-port",
        str(INBOUND_PORT),
        "--outbound-port",
        str(OUTBOUND_PORT),
        # Prometheus scrapes the metrics port from outside the namespace; the admin
        # port (127.0.0.1) is not exempt
        "--metrics-port",
        str(METRICS_PORT),
    ]
    if sp.published:  # published ports stay reachable from the host as before
        args += ["--exclude-inbound-ports", ",".join(str(p) for p in sp.published)]
    if dns_capture:  # the app's DNS to its sidecar (mesh services of other nodes)
        args += ["--dns-port", str(DNS_PORT)]
    return args


def init_container(sp: ServicePlan, options: InjectOptions) -> CommentedMap:
    init = CommentedMap()
    init["image"] = options.image
    init["entrypoint"] = _flow(["gossamer"])
    init["command"] = _flow(iptables_command(sp, options.dns_capture))
    init["user"] = _q("0:0")
    init["cap_add"] = _flow(["NET_ADMIN", "NET_RAW"])
    init["network_mode"] = f"service:{names.netns(sp.name)}"
    init["restart"] = _q("no")
    _profiles(init, sp)
    return init


def sidecar_command(sp: ServicePlan, options: InjectOptions) -> list[str]:
    """The sidecar's arguments (after the `gossamer` entrypoint)."""
    control = multinode.sidecar_control(sp, options)
    args = ["proxy", "--service", sp.mesh_name, "--namespace", options.namespace]
    for port, protocol in sp.ports:
        # the sidecar speaks HTTP/1.1 or carries opaque TCP
        args += ["--app-port", f"{port}/{'http' if protocol == 'http' else 'tcp'}"]
    token = names.container_token_file(sp.name, options.bootstrap)
    # a stable instance id: the join token admits one instance, and Compose recreates
    # the container (new hostname) whenever it likes; this id stays the same
    args += ["--control", control, "--token-file", token, "--instance-id", sp.name]
    # certificate, key and last configuration kept on a tmpfs volume: a restarted
    # sidecar serves at once, even while the control plane is down
    args += ["--state-dir", names.CONTAINER_STATE_DIR]
    if options.mode == "transparent" and sp.shape != "host" and options.dns_capture:
        args += ["--dns-port", str(DNS_PORT)]
    args += multinode.sidecar_extra_args(sp, options)
    if sp.port_offset:
        args += [
            "--inbound-port",
            str(INBOUND_PORT + sp.port_offset),
            "--outbound-port",
            str(OUTBOUND_PORT + sp.port_offset),
            "--admin-port",
            str(ADMIN_PORT + sp.port_offset),
            "--metrics-port",
            str(METRICS_PORT + sp.port_offset),
        ]
    return args


def healthcheck(test: list[str], *, start_period: str) -> CommentedMap:
    check = CommentedMap()
    check["test"] = _flow(test)
    check["interval"] = "5s"
    check["timeout"] = "3s"
    check["retries"] = 3
    check["start_period"] = start_period
    check["start_interval"] = "1s"
    return check


def sidecar_ready_probe(port: int) -> str:
    """Healthy once the sidecar has its certificate and configuration.

    The admin `/ready` also waits for the app to accept connections, but Compose starts
    the app only after its sidecar is healthy: so everything `/ready` reports missing
    must be the app (`{"ready": false, "missing": ["app (...)"]}`).
    """
    return (
        "import http.client,json,sys; "
        f"c=http.client.HTTPConnection('127.0.0.1',{port},timeout=2); "
        f"c.request('GET','{READY_PATH}'); "
        "m=json.loads(c.getresponse().read())['missing']; "
        "sys.exit(any(not x.startswith('app') for x in m))"
    )


def http_probe(port: int, path: str) -> str:
    return (
        f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}{path}', timeout=2)"
    )


def sidecar(sp: ServicePlan, options: InjectOptions) -> CommentedMap:
    proxy = CommentedMap()
    proxy["image"] = options.image
    proxy["entrypoint"] = _flow(["gossamer"])
    proxy["command"] = _flow(sidecar_command(sp, options))
    proxy["user"] = _q(f"{PROXY_UID}:{PROXY_UID}")
    proxy["network_mode"] = "host" if sp.shape == "host" else f"service:{names.netns(sp.name)}"
    mounts = [f"{names.state_volume(sp.name)}:{names.CONTAINER_STATE_DIR}"]
    if options.bootstrap == "volumes":
        mounts.append(f"{names.token_volume(sp.name)}:{names.CONTAINER_TOKEN_DIR}:ro")
    else:
        proxy["secrets"] = _block([names.token_secret(sp.name)])
    proxy["volumes"] = _block(mounts)
    if options.observability:
        port = OTLP_GRPC_PORT
        host = "127.0.0.1" if sp.shape == "host" else names.JAEGER
        env = [("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://{host}:{port}")]
        if sp.version:
            env.append(("GOSSAMER_SERVICE_VERSION", _q(sp.version)))
        proxy["environment"] = CommentedMap(env)
    depends = CommentedMap()
    if sp.shape == "netns" and options.mode == "transparent":
        depends[names.init(sp.name)] = condition("service_completed_successfully")
    if options.bootstrap == "volumes":
        depends[names.BOOTSTRAP] = condition("service_completed_successfully")
    if multinode.local_control(options):
        depends[names.CONTROL] = condition("service_healthy")
    if depends:
        proxy["depends_on"] = depends
    probe = sidecar_ready_probe(ADMIN_PORT + sp.port_offset)
    proxy["healthcheck"] = healthcheck(["CMD", "python3", "-c", probe], start_period="60s")
    proxy["restart"] = "unless-stopped"
    _profiles(proxy, sp)
    return proxy


def state_volume() -> CommentedMap:
    """A sidecar's state volume: tmpfs (memory only: it holds the workload's private key,
    which never reaches a disk), owned by the sidecar's UID, mode 0700. Docker's local
    driver mounts it when the first container using it starts and unmounts it (losing
    the content) when the last one stops, so `S-netns`, which lives as long as the
    service's namespace, mounts it too (read-only): a restart of the sidecar keeps it.
    `docker compose down` and a host reboot lose it (the sidecar then bootstraps with
    its join token again), as does every restart of a host-network sidecar (no
    `S-netns`). tests/docker/test_state_volume.py checks this on a real Engine."""
    options = CommentedMap(
        [
            ("type", "tmpfs"),
            ("device", "tmpfs"),
            ("o", _q(f"mode=0700,uid={PROXY_UID},gid={PROXY_UID}")),
        ]
    )
    return CommentedMap([("driver", "local"), ("driver_opts", options)])


def _networks(target: CommentedMap, plan: Plan) -> None:
    if plan.networks != ("default",):
        target["networks"] = _block(plan.networks)


def _ports(target: CommentedMap, ports: list[str | None]) -> None:
    published = [_q(p) for p in ports if p is not None]
    if published:
        target["ports"] = _block(published)


def control_plane(plan: Plan, options: InjectOptions, notes: list[str]) -> CommentedMap:
    control = CommentedMap()
    control["image"] = options.image
    control["entrypoint"] = _flow(["gossamer"])
    control["command"] = _flow(["control", "--config", names.CONTAINER_MESH_FILE])
    control["configs"] = _block(
        [CommentedMap([("source", names.MESH_CONFIG), ("target", names.CONTAINER_MESH_FILE)])]
    )
    if options.bootstrap == "volumes":
        mounts = [f"{names.CA_VOLUME}:{names.CONTAINER_CA_DIR}"]
        if options.observability:
            mounts.append(prometheus_token_mount())
        control["volumes"] = _block(mounts)
        control["depends_on"] = CommentedMap(
            [(names.BOOTSTRAP, condition("service_completed_successfully"))]
        )
    else:
        secrets = [CommentedMap([("source", names.CA_SECRET), ("target", names.CONTAINER_CA_DIR)])]
        if options.observability:
            secrets.append(prometheus_token_secret())
        control["secrets"] = _block(secrets)
    if options.observability:
        control["environment"] = CommentedMap(
            [("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://{names.JAEGER}:{OTLP_GRPC_PORT}")]
        )
    _networks(control, plan)
    ports = [publish(API_PORT, API_PORT, plan, notes)]
    if any(sp.shape == "host" for sp in plan.meshed) and options.node is None:
        ports.append(publish(XDS_PORT, XDS_PORT, plan, notes))
    ports += multinode.control_ports(options)  # other hosts join through these
    _ports(control, ports)
    probe = http_probe(API_PORT, HEALTH_PATH)
    control["healthcheck"] = healthcheck(["CMD", "python3", "-c", probe], start_period="30s")
    control["restart"] = "unless-stopped"
    return control


def bootstrap_command(plan: Plan, options: InjectOptions) -> list[str]:
    """`gossamer-bootstrap`'s arguments: the CA (made once) and a token per sidecar."""
    args: list[str] = ["certs", "bootstrap", "--dir", names.CONTAINER_CA_DIR]
    args += ["--trust-domain", options.trust_domain or DEFAULT_TRUST_DOMAIN]
    args += ["--namespace", options.namespace, "--owner", _q(f"{PROXY_UID}:{PROXY_UID}")]
    for sp in plan.meshed:
        target = f"{names.BOOTSTRAP_TOKENS_DIR}/{sp.name}/token"
        args += ["--token", f"{sp.mesh_name}={target}"]
    if options.observability:  # the viewer API token Prometheus reads /v1/http_sd with
        uid = names.PROMETHEUS_UID
        args += ["--prometheus-token", f"{names.BOOTSTRAP_PROMETHEUS_DIR}/token"]
        args += ["--prometheus-owner", _q(f"{uid}:{uid}")]
    return args


def bootstrap(plan: Plan, options: InjectOptions) -> CommentedMap:
    """--bootstrap volumes: a one-shot container that makes the mesh's secrets at
    `docker compose up` (the CA once, each join token while it stays valid) in named
    volumes: the CA's for the control plane, one per sidecar for its token only."""
    service = CommentedMap()
    service["image"] = options.image
    service["entrypoint"] = _flow(["gossamer"])
    service["command"] = _block(bootstrap_command(plan, options))
    service["user"] = _q("0:0")
    mounts = [f"{names.CA_VOLUME}:{names.CONTAINER_CA_DIR}"]
    mounts += [
        f"{names.token_volume(sp.name)}:{names.BOOTSTRAP_TOKENS_DIR}/{sp.name}"
        for sp in plan.meshed
    ]
    if options.observability:
        mounts.append(f"{names.PROMETHEUS_TOKEN_VOLUME}:{names.BOOTSTRAP_PROMETHEUS_DIR}")
    service["volumes"] = _block(mounts)
    service["network_mode"] = "none"
    service["restart"] = _q("no")
    return service


def jaeger(plan: Plan, notes: list[str]) -> CommentedMap:
    service = CommentedMap()
    service["image"] = names.JAEGER_IMAGE
    service["command"] = _flow(
        [
            "--set",
            f"receivers.otlp.protocols.grpc.endpoint=0.0.0.0:{OTLP_GRPC_PORT}",
            "--set",
            "receivers.otlp.protocols.http.endpoint=0.0.0.0:4318",
        ]
    )
    _networks(service, plan)
    ports = [publish(JAEGER_UI_PORT, JAEGER_UI_PORT, plan, notes)]
    if any(sp.shape == "host" for sp in plan.meshed):
        ports.append(publish(OTLP_GRPC_PORT, OTLP_GRPC_PORT, plan, notes))
    _ports(service, ports)
    service["restart"] = "unless-stopped"
    return service


def prometheus_token_secret() -> CommentedMap:
    """--bootstrap files: the Prometheus token file as a secret, where both read it."""
    return CommentedMap(
        [("source", names.PROMETHEUS_TOKEN_SECRET), ("target", names.CONTAINER_PROMETHEUS_TOKEN)]
    )


def prometheus_token_mount() -> str:
    """--bootstrap volumes: the volume gossamer-bootstrap writes the token to, read-only."""
    return f"{names.PROMETHEUS_TOKEN_VOLUME}:{names.CONTAINER_PROMETHEUS_TOKEN_DIR}:ro"


def prometheus(plan: Plan, options: InjectOptions, notes: list[str]) -> CommentedMap:
    """Prometheus finds the sidecars through the control plane's `/v1/http_sd` with a
    viewer API token: the file mesh.yaml's `observability.prometheus_token_file` names."""
    service = CommentedMap()
    service["image"] = names.PROMETHEUS_IMAGE
    service["configs"] = _block(
        [
            CommentedMap(
                [
                    ("source", names.PROMETHEUS_CONFIG),
                    ("target", names.CONTAINER_PROMETHEUS_FILE),
                ]
            )
        ]
    )
    if options.bootstrap == "volumes":
        service["volumes"] = _block([prometheus_token_mount()])
    else:
        service["secrets"] = _block([prometheus_token_secret()])
    _networks(service, plan)
    _ports(service, [publish(PROMETHEUS_PORT, PROMETHEUS_PORT, plan, notes)])
    service["depends_on"] = CommentedMap([(names.CONTROL, condition("service_started"))])
    service["restart"] = "unless-stopped"
    return service
