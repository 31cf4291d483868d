"""`gossamer inject` across hosts: the options and services of a node of a larger mesh.

Issue 18, item 5 (docs/architecture.md, "Compose integration"). One compose file per
host ("node"); the host that holds the CA and the first control plane is injected with
`--node NAME --advertise-host H`, every other host with `--join ADDRS --node NAME
--advertise-host H` (and `--control-replica` to run a control-plane replica of its own).

- `check_options` validates and normalizes the multi-node options (pure).
- `gateway_service` is the node's `gossamer gateway`, publishing its port on every
  interface of the host, advertised as `H:PORT`.
- `sidecar_control`/`sidecar_extra_args` are what a sidecar of such a file adds to its
  command: the control-plane addresses in preference order (the local replica first),
  `--node`, and on a joining host `--advertise-address`: the control plane sees a joined
  sidecar connect from another host's (or Docker's) address, so the sidecar registers
  its Compose name instead (a DNS name every container of its network resolves, the
  node's gateway included); its join token must allow that name (`token create
  --allow-address NAME`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from gossamer.compose import names
from gossamer.contract.identity import CONTROL_NAMESPACE, GATEWAY_SERVICE, check_label
from gossamer.contract.ports import BOOTSTRAP_PORT, XDS_PORT
from gossamer.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from gossamer.compose.options import InjectOptions
    from gossamer.compose.plan import Plan, ServicePlan

GATEWAY_PORT = 15443  # `gossamer gateway --listen`'s default (Istio's east-west port)
GATEWAY_ADMIN_PORT = 15021  # `gossamer gateway --admin-port`'s default
_HOSTPORT = re.compile(
    r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9._-]+))(?::(?P<port>\d+))?$"
)
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def _q(text: str) -> DoubleQuotedScalarString:
    return cast(DoubleQuotedScalarString, DoubleQuotedScalarString(text))


def _flow(items: Iterable[Any]) -> CommentedSeq:
    seq = CommentedSeq(items)
    seq.fa.set_flow_style()
    return seq


def parse_join(text: str) -> tuple[str, ...]:
    """`--join a:15012,b` -> ("a:15012", "b:15012"): the existing mesh's control-plane
    xDS addresses (port 15012 when left out), in preference order."""
    found: list[str] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        m = _HOSTPORT.match(item)
        port = int(m.group("port") or XDS_PORT) if m else 0
        if m is None or not 0 < port < 65536:
            raise UsageError(
                f"--join: {item!r} is not HOST[:PORT]",
                hint="the existing mesh's control plane(s), e.g. --join 10.0.0.1:15012,10.0.0.2",
            )
        host = f"[{m.group('v6')}]" if m.group("v6") else str(m.group("host"))
        address = f"{host}:{port}"
        if address not in found:
            found.append(address)
    if not found:
        raise UsageError("--join needs at least one control-plane address HOST[:PORT]")
    return tuple(found)


def parse_etcd(text: str) -> str:
    """`--etcd HOST:PORT[,HOST:PORT...]` (or an `etcd://` URL) -> the mesh.yaml store URL."""
    from gossamer.discovery.stores import parse_store_url

    url = text.strip() if text.strip().startswith("etcd://") else f"etcd://{text.strip()}"
    try:
        return parse_store_url(url).describe()
    except ConfigError as exc:
        raise UsageError(f"--etcd: {exc.detail}", hint="e.g. --etcd 10.0.0.1:2379") from None


def check_options(options: InjectOptions) -> None:
    """Refuse multi-node options that do not fit together (UsageError, one line)."""
    multi = options.node is not None or bool(options.join)
    if options.node is not None:
        try:
            check_label(options.node, "--node")
        except ConfigError as exc:
            raise UsageError(f"--node: {exc.detail}") from None
    if options.join and options.node is None:
        raise UsageError("--join needs --node NAME: this host's name in the mesh")
    if options.node is not None and options.advertise_host is None:
        raise UsageError(
            "--node needs --advertise-host HOST: the address other hosts reach this one at",
            hint="its node gateway is published on that address, port --gateway-port (15443)",
        )
    if options.advertise_host is not None and not multi:
        raise UsageError("--advertise-host goes with --node (and --join)")
    if options.advertise_host is not None and not _HOST.match(options.advertise_host):
        raise UsageError(f"--advertise-host: {options.advertise_host!r} is not an IP or host name")
    if not 0 < options.gateway_port < 65536:
        raise UsageError(f"--gateway-port {options.gateway_port} is out of range (1-65535)")
    if options.control_replica and not options.join:
        raise UsageError(
            "--control-replica goes with --join: the first host runs the control plane anyway"
        )
    if options.etcd is not None and options.join and not options.control_replica:
        raise UsageError("--etcd goes with --control-replica on a joining host")
    if multi and options.bootstrap != "files":
        raise UsageError("--node and --join need --bootstrap files (tokens come from files)")
    if options.join and options.observability:
        raise UsageError(
            "--with-observability goes with the host that runs the control plane, not --join"
        )


def check_host_ports(options: InjectOptions, taken: set[int]) -> None:
    """The host ports a multi-node file publishes on every interface must be free in it."""
    wanted = [options.gateway_port] if options.node is not None else []
    if options.node is not None and local_control(options):
        wanted += [BOOTSTRAP_PORT, XDS_PORT]
    clash = [port for port in wanted if port in taken]
    if clash:
        raise UsageError(
            f"host port(s) {', '.join(map(str, clash))} already published by the file; "
            "the node gateway and control plane need them",
            hint="choose another --gateway-port, or change the file's published ports",
        )


def local_control(options: InjectOptions) -> bool:
    """Whether the file runs a control plane (its own mesh, the first host, a replica)."""
    return not options.join or options.control_replica


def advertise_name(sp: ServicePlan) -> str:
    """What a joined sidecar registers as its address: its Compose name as a DNS label
    (`Flask_App` -> `flask-app`, added as a network alias when it differs)."""
    from gossamer.compose.plan import mesh_name

    return sp.name if _LABEL.match(sp.name) else mesh_name(sp.name)


def control_list(local: str, options: InjectOptions) -> str:
    """`--control` of a sidecar or the gateway: the local control plane (reached at
    `local`), then the joined ones, in preference order."""
    if not options.join:
        return local
    return ",".join(([local] if options.control_replica else []) + list(options.join))


def sidecar_control(sp: ServicePlan, options: InjectOptions) -> str:
    """`--control` of a sidecar: the local control plane, then the joined ones."""
    local = f"127.0.0.1:{XDS_PORT}" if sp.shape == "host" else f"{names.CONTROL}:{XDS_PORT}"
    return control_list(local, options)


def sidecar_extra_args(sp: ServicePlan, options: InjectOptions) -> list[str]:
    args: list[str] = []
    if options.node is not None:
        args += ["--node", options.node]
    if options.join:
        host = options.advertise_host if sp.shape == "host" else advertise_name(sp)
        args += ["--advertise-address", str(host)]
    if options.control_replica:
        args += ["--bootstrap", join_bootstrap(options)]
    return args


def join_bootstrap(options: InjectOptions) -> str:
    """Where a joining host's sidecars and gateway exchange their join token: the joined
    control planes (whose CA directory holds the tokens `token create --dir` made), not
    the local replica (which signs with its own intermediate and has no such tokens)."""
    hosts = [address.rpartition(":")[0] for address in options.join]
    return ",".join(f"{host}:{BOOTSTRAP_PORT}" for host in dict.fromkeys(hosts))


def gateway_advertise(options: InjectOptions) -> str:
    return f"{options.advertise_host}:{options.gateway_port}"


def gateway_command(options: InjectOptions) -> list[str]:
    """`gossamer-gateway`'s arguments (after the `gossamer` entrypoint)."""
    control = control_list(f"{names.CONTROL}:{XDS_PORT}", options)  # as its sidecars'
    args = [
        "gateway", "--node", str(options.node), "--listen", f"0.0.0.0:{GATEWAY_PORT}",
        "--advertise", gateway_advertise(options), "--control", control,
        "--token-file", names.container_token_file(names.GATEWAY),
    ]  # fmt: skip
    if options.control_replica:  # the tokens are at the joined control planes
        args += ["--bootstrap", join_bootstrap(options)]
    return args


def gateway_service(plan: Plan, options: InjectOptions) -> CommentedMap:
    """The node gateway: other hosts' sidecars reach this host's instances through it."""
    from gossamer.compose import services

    gateway = CommentedMap()
    gateway["image"] = options.image
    gateway["entrypoint"] = _flow(["gossamer"])
    gateway["command"] = _flow(gateway_command(options))
    gateway["user"] = _q(f"{services.PROXY_UID}:{services.PROXY_UID}")
    gateway["secrets"] = CommentedSeq([names.token_secret(names.GATEWAY)])
    if plan.networks != ("default",):
        gateway["networks"] = CommentedSeq(plan.networks)
    # every interface: other hosts dial it (the advertised address)
    gateway["ports"] = CommentedSeq([_q(f"{options.gateway_port}:{GATEWAY_PORT}")])
    if local_control(options):
        gateway["depends_on"] = CommentedMap(
            [(names.CONTROL, services.condition("service_healthy"))]
        )
    probe = services.http_probe(GATEWAY_ADMIN_PORT, services.READY_PATH)
    gateway["healthcheck"] = services.healthcheck(
        ["CMD", "python3", "-c", probe], start_period="60s"
    )
    gateway["restart"] = "unless-stopped"
    return gateway


def control_ports(options: InjectOptions) -> list[str]:
    """What the control plane of a multi-node file publishes on every interface: the
    bootstrap and xDS ports other hosts' sidecars and gateways join through."""
    if options.node is None:
        return []
    return [f"{port}:{port}" for port in (BOOTSTRAP_PORT, XDS_PORT)]


GATEWAY_IDENTITY = (GATEWAY_SERVICE, CONTROL_NAMESPACE)  # what its join token is made for
