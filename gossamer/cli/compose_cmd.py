"""`gossamer inject` and `gossamer uninject`: add sidecars to a compose file, and undo it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from gossamer.compose import names
from gossamer.errors import GossamerError, UsageError
from gossamer.yamlconf import format_duration, parse_duration

if TYPE_CHECKING:
    from gossamer.compose.options import InjectOptions


def _names(values: tuple[str, ...]) -> tuple[str, ...]:
    """`--only a --only b,c` -> (a, b, c)."""
    return tuple(n.strip() for v in values for n in v.split(",") if n.strip())


def _say(message: str) -> None:
    click.echo(message, err=True)


def _ttl(text: str) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"--token-ttl: {exc}") from None
    if seconds <= 0:
        raise UsageError("--token-ttl must be positive")
    return seconds


INJECT_HELP = """Add a Gossamer sidecar to every service of a compose file.

Writes FILE.meshed.yaml beside FILE (FILE itself is untouched; -o picks another name,
-o - prints to standard output, --in-place overwrites FILE), plus the mesh's bootstrap
in a .gossamer/ folder beside it: the CA, one join token per service (Compose secrets,
never inline) and the control plane's mesh.yaml. Start the result with
`docker compose -f FILE.meshed.yaml up` after building the image
(`docker build -t gossamer:latest .` in the Gossamer source tree).

Each meshed service S gets S-netns (owns S's network namespace, ports and networks;
S stays reachable by name), S-init in transparent mode (installs iptables rules with
NET_ADMIN, then exits) and S-proxy (the sidecar, healthy before S starts). Ports S
published stay reachable from the host. A service opts out with
`x-gossamer: {mesh: false}`; `x-gossamer: {port: N, protocol: http|http2|grpc|tcp}`
sets the port the sidecar delivers to (default: its first TCP port);
`x-gossamer: {service: NAME}` sets its name in the mesh, so several Compose services
(one per replica; `deploy.replicas` cannot be meshed) are instances of one service.

Explicit mode needs no privileges: nothing is intercepted, and the app gets
HTTP_PROXY/http_proxy pointing at its sidecar (127.0.0.1:15001) unless --no-proxy-env.

Several hosts, one mesh (README "Three hosts"): the host with the CA and control plane
takes --node NAME --advertise-host H (adds the node gateway `gossamer-gateway`,
publishing --gateway-port on H, and publishes the control plane's ports 15011/15012);
every other host takes --join ADDRS --node NAME --advertise-host H --token-dir DIR (no
CA, no control plane; tokens made on the CA's host with `gossamer token create
--output-dir DIR`), and --control-replica --intermediate DIR --mesh-file F to run a
control-plane replica its sidecars prefer.

Injecting an injected file again with the same options changes nothing; the original
is recorded in the output, and `gossamer uninject` restores it byte for byte.
"""


def _multinode_options(f: Any) -> Any:
    """The flags of `inject` across hosts (gossamer/compose/multinode.py)."""
    dirs = click.Path(file_okay=False, path_type=Path)
    for option in reversed([
        click.option("--node", default=None, metavar="NAME",
                     help="This host's node name: adds the node gateway; sidecars get --node."),
        click.option("--advertise-host", default=None, metavar="HOST",
                     help="With --node: the address other hosts reach this one at."),
        click.option("--gateway-port", type=click.IntRange(1, 65535), default=15443,
                     show_default=True, help="Host port the node gateway is published on."),
        click.option("--join", default=None, metavar="ADDRS",
                     help="Join an existing mesh: its control planes HOST[:15012],... (no "
                     "local CA or control plane)."),
        click.option("--token-dir", type=dirs, default=None,
                     help="With --join: join tokens from the CA's host (S.token per "
                     "service, gateway.gossamer-system.token)."),
        click.option("--control-replica", is_flag=True,
                     help="With --join: run a control-plane replica here (etcd store)."),
        click.option("--intermediate", type=dirs, default=None,
                     help="The replica's CA directory (certs intermediate --out DIR)."),
        click.option("--mesh-file", type=click.Path(dir_okay=False, path_type=Path),
                     default=None, help="The first host's .gossamer/mesh.yaml (replica)."),
        click.option("--etcd", default=None, metavar="HOST:PORT,...",
                     help="The control plane's etcd store (shared with replicas)."),
        click.option("--services-of", multiple=True, metavar="FILE",
                     type=click.Path(dir_okay=False, path_type=Path),
                     help="With --node: another host's compose file; mesh.yaml declares "
                     "its services too (repeatable)."),
    ]):  # fmt: skip
        f = option(f)
    return f


@click.command(help=INJECT_HELP)
@click.argument("file", type=click.Path(path_type=Path))
@click.option("-o", "--output", help="Output file, or - for standard output.")
@click.option("--in-place", is_flag=True, help="Overwrite FILE with the injected version.")
@click.option(
    "--mode",
    type=click.Choice(["transparent", "explicit"]),
    default="transparent",
    show_default=True,
    help="transparent: iptables redirect (an init container with NET_ADMIN); "
    "explicit: no privileges, the app uses its sidecar as HTTP proxy.",
)
@click.option("--only", multiple=True, metavar="SVC", help="Mesh only these (repeat or a,b).")
@click.option("--exclude", multiple=True, metavar="SVC", help="Do not mesh these (repeat or a,b).")
@click.option(
    "--with-observability",
    is_flag=True,
    help="Add Jaeger v2 (UI on 127.0.0.1:16686) and Prometheus (127.0.0.1:9090).",
)
@click.option("--image", default="gossamer:latest", show_default=True, help="Gossamer image.")
@click.option("--namespace", default="default", show_default=True, help="Mesh namespace.")
@click.option("--no-proxy-env", is_flag=True, help="Explicit mode: do not set HTTP_PROXY.")
@click.option(
    "--no-dns-capture",
    is_flag=True,
    help="Transparent mode: leave the app's DNS to Docker alone (by default the sidecar "
    "answers it first, for mesh services on other nodes, and forwards the rest).",
)
@click.option(
    "--bootstrap",
    type=click.Choice(["files", "volumes"]),
    default="files",
    show_default=True,
    help="files: CA and join tokens made now in .gossamer/ (Compose secrets); volumes: "
    "made by a one-shot service at `docker compose up`, in named volumes (the file "
    "stands alone, e.g. in a repository).",
)
@click.option("--trust-domain", default=None, help="For a new CA [default: gossamer.local].")
@click.option("--token-ttl", default="720h", show_default=True, help="Join token lifetime.")
@click.option("--force", is_flag=True, help="Replace an output gossamer did not write.")
@click.option(
    "--check",
    is_flag=True,
    help="First check that the local Docker Engine and Compose can run the output (if "
    "not: what fails and why, nothing written); then validate it: Compose schema, "
    "`docker compose config`, and semantics.",
)
@_multinode_options
def inject(
    file: Path,
    output: str | None,
    in_place: bool,
    mode: str,
    only: tuple[str, ...],
    exclude: tuple[str, ...],
    with_observability: bool,
    image: str,
    namespace: str,
    no_proxy_env: bool,
    no_dns_capture: bool,
    bootstrap: str,
    trust_domain: str | None,
    token_ttl: str,
    force: bool,
    check: bool,
    node: str | None,
    advertise_host: str | None,
    gateway_port: int,
    join: str | None,
    token_dir: Path | None,
    control_replica: bool,
    intermediate: Path | None,
    mesh_file: Path | None,
    etcd: str | None,
    services_of: tuple[Path, ...],
) -> None:
    from gossamer.compose import multinode
    from gossamer.compose.join_files import JoinInputs
    from gossamer.compose.options import InjectOptions
    from gossamer.compose.workflow import inject_file, relative_paths_warning

    if in_place and output is not None:
        raise UsageError("--in-place and -o cannot be used together")
    stdout = output == "-"
    if check and stdout:
        raise UsageError("--check needs an output file", hint="drop -o -, or drop --check")
    options = InjectOptions(
        mode=mode,
        only=_names(only),
        exclude=_names(exclude),
        observability=with_observability,
        image=image,
        namespace=namespace,
        proxy_env=not no_proxy_env,
        dns_capture=not no_dns_capture,
        bootstrap=bootstrap,
        trust_domain=trust_domain if bootstrap == "volumes" else None,
        node=node,
        join=multinode.parse_join(join) if join is not None else (),
        advertise_host=advertise_host,
        gateway_port=gateway_port,
        control_replica=control_replica,
        etcd=multinode.parse_etcd(etcd) if etcd is not None else None,
    )
    if join is not None and trust_domain is not None:
        raise UsageError("--trust-domain goes with the CA's host, not --join")
    inputs = JoinInputs(token_dir=token_dir, intermediate=intermediate, mesh_file=mesh_file,
                        services_of=services_of)  # fmt: skip
    ttl = _ttl(token_ttl)
    if check:
        _check_engine(file, options)
    target = file if in_place else (None if output in (None, "-") else Path(output))
    outcome = inject_file(
        file,
        target,
        options,
        stdout=stdout,
        force=force,
        trust_domain=trust_domain,
        token_ttl=ttl,
        join_inputs=inputs,
    )
    result = outcome.result
    if stdout:
        sys.stdout.write(result.text)
        sys.stdout.flush()
    plan = result.plan
    meshed = ", ".join(sp.name for sp in plan.meshed)
    _say(f"meshed {len(plan.meshed)} service(s) ({result.options.mode} mode): {meshed}")
    for name, why in plan.skipped:
        _say(f"  left alone: {name} ({why})")
    for sp in plan.renamed():
        why = "x-gossamer: service" if sp.named else "names there are DNS-1123 labels"
        _say(f"  {sp.name} is {sp.mesh_name} in the mesh ({why})")
    for sp in plan.meshed:
        if sp.shape == "host":
            _say(f"  {sp.name}: network_mode host, so its sidecar runs beside it in explicit mode")
        if sp.app_port is None:
            _say(f"  {sp.name}: no TCP port found; its sidecar only carries outgoing traffic")
    for note in result.notes:
        _say(f"  note: {note}")
    report = outcome.bootstrap
    if report is not None:
        parts = [f"CA for {report.trust_domain}" + (" created" if report.ca_created else " kept")]
        if report.tokens_created:
            parts.append(
                f"{len(report.tokens_created)} join token(s) created (valid "
                f"{format_duration(ttl)}, each admitting its one sidecar: the same "
                "instance id restarting or recreated, never a second one)"
            )
        if report.tokens_kept:
            parts.append(f"{len(report.tokens_kept)} kept")
        if report.prometheus_token:
            parts.append(f"Prometheus's viewer API token {report.prometheus_token}")
        _say(f"bootstrap in {report.directory}: {', '.join(parts)}")
        for rel in report.files_kept:
            _say(f"  kept {rel}: it was edited (delete it to have it regenerated)")
    joined = outcome.joined
    if joined is not None:
        parts = [f"{len(joined.tokens_copied)} join token(s) copied"]
        if joined.tokens_kept:
            parts.append(f"{len(joined.tokens_kept)} kept")
        if joined.ca_copied:
            parts.append("the replica's intermediate CA copied")
        if joined.mesh_written:
            parts.append("the replica's mesh.yaml written")
        _say(f"joining {', '.join(result.options.join)} as node {result.options.node}; "
             f"bootstrap in {joined.directory}: {', '.join(parts)}")  # fmt: skip
    if result.options.node is not None:
        gw = multinode.gateway_advertise(result.options)
        _say(f"  node gateway {names.GATEWAY}: other hosts reach this one at {gw}")
        if result.options.mode == "transparent" and not result.options.dns_capture:
            _say("  note: with --no-dns-capture the names of services that live only on "
                 "other hosts do not resolve here; --mode explicit reaches them by name")  # fmt: skip
    if outcome.output is not None:
        warning = relative_paths_warning(file, outcome.output)
        if warning:
            _say(f"warning: {warning}")
        if outcome.written:
            _say(f"wrote {outcome.output}")
        else:
            _say(f"{outcome.output} is already up to date: nothing to change")
        if check:
            _run_checks(result.original, outcome.output)
        _say(f"start it with: docker compose -f {outcome.output} up")


def _check_engine(file: Path, options: InjectOptions) -> None:
    """--check, before anything is written: can the Docker here run the injected file?
    An engine that cannot be asked (no docker, daemon down) only skips this check."""
    from gossamer.cli.doctor_cmd import echo_findings
    from gossamer.compose import engine_check, engine_probe
    from gossamer.compose.document import load_compose
    from gossamer.compose.inject import inject_text
    from gossamer.compose.workflow import read_compose

    result = inject_text(read_compose(file), options, source=file.name)
    versions = engine_probe.probe()
    unknown = engine_check.engine_unknown(versions)
    if unknown is not None:
        _say(f"  engine check skipped: {unknown}")
        return
    features = engine_check.features_used(load_compose(result.text, file.name).data)
    findings = engine_check.check(versions, sorted(features))
    echo_findings([f for f in findings if f.severity != "ok"], err=True)
    if not engine_check.usable(findings):
        bad = sum(f.severity == "error" for f in findings)
        raise GossamerError(
            f"the Docker here cannot run the injected {file.name}: {bad} problem(s) above",
            hint="nothing was written; install what the fix lines say (gossamer doctor "
            "checks again), or drop --check to write the file for another machine",
        )
    engine = versions.engine_text or str(versions.engine)
    compose = versions.compose_text or str(versions.compose)
    _say(f"engine check passed: Docker Engine {engine}, Compose {compose}")


def _run_checks(original: str, output: Path) -> None:
    """--check after writing: each check's line (passed, failed, or skipped and why),
    then a summary naming the checks that ran and those skipped."""
    from gossamer.compose import check_report

    outcomes = check_report.run_checks(original, output)
    for line in check_report.summary_lines(outcomes):
        _say(line)
    problems = check_report.problems(outcomes)
    if problems:
        raise GossamerError(
            f"{output} fails {len(problems)} check(s): " + "; ".join(problems[:5]),
            hint="please report this with the input file",
        )


@click.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("-o", "--output", help="Write the original here (- for standard output).")
@click.option("--force", is_flag=True, help="Restore even if FILE was edited since injection.")
def uninject(file: Path, output: str | None, force: bool) -> None:
    """Restore the original of a file written by `gossamer inject`, byte for byte.

    Restores FILE in place unless -o is given. Refuses when FILE was edited after the
    injection (the edits would be lost) unless --force. The .gossamer/ folder is kept:
    it holds the mesh's CA.
    """
    from gossamer.compose.workflow import uninject_file

    stdout = output == "-"
    target = None if output in (None, "-") else Path(output)
    original, written = uninject_file(file, target, stdout=stdout, force=force)
    if stdout:
        sys.stdout.write(original)
        sys.stdout.flush()
    else:
        _say(f"restored the original compose file into {written}")
