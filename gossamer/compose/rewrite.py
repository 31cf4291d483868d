"""Apply a `Plan` to a loaded compose file: the edit itself, comment by comment.

For each meshed service S (see `services` for the shape): the keys that describe a
network namespace (`NETWORK_KEYS`, and `net.*` sysctls, which Docker only applies in
a namespace the container creates) move, with their comments, to `S-netns`, which
also gets the alias S (and S's container_name) on each of its networks; S gets
`network_mode: service:S-netns` where its first moved key was, and a `depends_on`
on its healthy sidecar (a short-form `depends_on` list becomes the equivalent
mapping). Links to S are pointed at `S-netns`, a `network_mode: service:S` at
`S-netns`. The added services follow the user's, then the secrets (CA directory,
one join token per service) and configs (mesh.yaml, prometheus.yml) pointing at
files under `.gossamer/`. Nothing else in the file changes.
"""

from __future__ import annotations

from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import LiteralScalarString

from gossamer.compose import generated_files, multinode, names, services
from gossamer.compose.comments import append, kept_tail, move_key, seq_to_map, set_before
from gossamer.compose.document import ComposeDocument
from gossamer.compose.options import InjectOptions
from gossamer.compose.plan import NETWORK_KEYS, Plan, ServicePlan

GENERATED_HEADER = {
    "transparent": "Added by gossamer inject: for each meshed service its network namespace\n"
    "owner (-netns), iptables set-up (-init) and sidecar (-proxy); the control plane.",
    "explicit": "Added by gossamer inject: for each meshed service its network namespace\n"
    "owner (-netns) and sidecar (-proxy); the control plane.",
}


def rewrite(doc: ComposeDocument, plan: Plan, options: InjectOptions) -> list[str]:
    """Edit `doc` in place; returns notes worth telling the user."""
    notes: list[str] = []
    svc_map = doc.services
    generated = CommentedMap()
    with kept_tail(svc_map):
        _retarget_links(svc_map, plan)
        for name, mode in plan.retarget.items():
            svc_map[name]["network_mode"] = mode
        for sp in plan.meshed:
            app = svc_map[sp.name]
            if sp.shape == "netns":
                owner = services.netns_owner(sp, options)
                _move_namespace(app, owner, sp)
                _add_aliases(owner, sp, options)
                generated[names.netns(sp.name)] = owner
                if options.mode == "transparent":
                    generated[names.init(sp.name)] = services.init_container(sp, options)
            generated[names.proxy(sp.name)] = services.sidecar(sp, options)
            _wire_app(app, sp, options, notes)
        if options.bootstrap == "volumes":
            generated[names.BOOTSTRAP] = services.bootstrap(plan, options)
        if multinode.local_control(options):
            generated[names.CONTROL] = services.control_plane(plan, options, notes)
        if options.node is not None:
            generated[names.GATEWAY] = multinode.gateway_service(plan, options)
        if options.observability:
            generated[names.JAEGER] = services.jaeger(plan, notes)
            generated[names.PROMETHEUS] = services.prometheus(plan, options, notes)
        first = next(iter(generated))
        for key, value in generated.items():
            svc_map[key] = value
        set_before(svc_map, first, GENERATED_HEADER[options.mode], indent=doc.style.mapping)
    if plan.meshed or options.bootstrap == "volumes":
        volumes = _section(doc, "volumes")
        with kept_tail(volumes):
            if options.bootstrap == "volumes":
                volumes[names.CA_VOLUME] = CommentedMap()
                for sp in plan.meshed:
                    volumes[names.token_volume(sp.name)] = CommentedMap()
                if options.observability:
                    volumes[names.PROMETHEUS_TOKEN_VOLUME] = CommentedMap()
            for sp in plan.meshed:  # tmpfs: the sidecar's key never reaches a disk
                volumes[names.state_volume(sp.name)] = services.state_volume()
    if options.bootstrap != "volumes":
        secrets = _section(doc, "secrets")
        with kept_tail(secrets):
            if multinode.local_control(options):
                secrets[names.CA_SECRET] = CommentedMap([("file", names.CA_DIR)])
            for sp in plan.meshed:
                secrets[names.token_secret(sp.name)] = CommentedMap(
                    [("file", names.token_file(sp.name))]
                )
            if options.node is not None:
                secrets[names.token_secret(names.GATEWAY)] = CommentedMap(
                    [("file", names.token_file(names.GATEWAY))]
                )
            if options.observability:
                secrets[names.PROMETHEUS_TOKEN_SECRET] = CommentedMap(
                    [("file", names.PROMETHEUS_TOKEN_FILE)]
                )
    if not multinode.local_control(options):
        return notes  # no control plane here: no mesh.yaml
    configs = _section(doc, "configs")
    with kept_tail(configs):
        if options.bootstrap == "volumes":
            # not secret: inline, so the file needs nothing beside it
            trust_domain = options.trust_domain or services.DEFAULT_TRUST_DOMAIN
            mesh = generated_files.mesh_body(
                plan,
                trust_domain=trust_domain,
                namespace=options.namespace,
                observability=options.observability,
            )
            configs[names.MESH_CONFIG] = CommentedMap([("content", LiteralScalarString(mesh))])
            if options.observability:
                prom = LiteralScalarString(generated_files.prometheus_body())
                configs[names.PROMETHEUS_CONFIG] = CommentedMap([("content", prom)])
        else:
            configs[names.MESH_CONFIG] = CommentedMap([("file", names.MESH_FILE)])
            if options.observability:
                configs[names.PROMETHEUS_CONFIG] = CommentedMap([("file", names.PROMETHEUS_FILE)])
    return notes


def _section(doc: ComposeDocument, key: str) -> CommentedMap:
    """The top-level mapping `key`, created (or filled in for a null) when needed."""
    value = doc.data.get(key)
    if isinstance(value, CommentedMap):
        return value
    section = CommentedMap()
    existed = key in doc.data
    doc.data[key] = section
    if not existed:
        set_before(doc.data, key)
    return section


def _retarget_links(svc_map: CommentedMap, plan: Plan) -> None:
    """`links: [S]` must name the container that now holds S's network endpoint."""
    netns_names = {sp.name for sp in plan.meshed if sp.shape == "netns"}
    for service in svc_map.values():
        links = service.get("links") if isinstance(service, dict) else None
        if not isinstance(links, list):
            continue
        for index, item in enumerate(links):
            target, _, alias = str(item).partition(":")
            if target in netns_names:
                links[index] = f"{names.netns(target)}:{alias or target}"


def _move_namespace(app: CommentedMap, owner: CommentedMap, sp: ServicePlan) -> None:
    own = [k for k, _ in app.non_merged_items()]
    moving = [k for k in own if k in NETWORK_KEYS]
    position = own.index(moving[0]) if moving else None
    with kept_tail(app):
        for key in moving:
            move_key(app, key, owner, keep_dst_tail=False)
        _move_net_sysctls(app, owner)
        value = f"service:{names.netns(sp.name)}"
        if position is None:
            app["network_mode"] = value
        else:
            app.insert(position, "network_mode", value)


def _is_net_sysctl(item: Any) -> bool:
    return str(item).strip().startswith("net.")


def _move_net_sysctls(app: CommentedMap, owner: CommentedMap) -> None:
    sysctls = app.get("sysctls")
    if isinstance(sysctls, CommentedMap):
        net_keys = [k for k in sysctls if _is_net_sysctl(k)]
        if net_keys and len(net_keys) == len(sysctls):
            move_key(app, "sysctls", owner, keep_dst_tail=False)
        elif net_keys:
            target = CommentedMap()
            owner["sysctls"] = target
            for key in net_keys:
                move_key(sysctls, key, target, keep_dst_tail=False)
    elif isinstance(sysctls, CommentedSeq):
        net_items = [i for i, item in enumerate(sysctls) if _is_net_sysctl(item)]
        if net_items and len(net_items) == len(sysctls):
            move_key(app, "sysctls", owner, keep_dst_tail=False)
        elif net_items:
            moved = CommentedSeq()
            with kept_tail(sysctls):
                entries = [(sysctls[i], sysctls.ca.items.get(i)) for i in net_items]
                for index in reversed(net_items):
                    del sysctls[index]  # shifts the later items' comments down
            for position, (item, entry) in enumerate(entries):
                moved.append(item)
                if entry is not None:
                    moved.ca.items[position] = entry
            owner["sysctls"] = moved


def _aliases_for(sp: ServicePlan, options: InjectOptions) -> list[str]:
    aliases = [sp.name]
    if options.join and multinode.advertise_name(sp) not in aliases:
        aliases.append(multinode.advertise_name(sp))  # the address it registers
    if sp.container_name and sp.container_name != sp.name:
        aliases.append(sp.container_name)
    if sp.named and sp.mesh_name not in aliases:
        # replicas of one mesh service all answer to its name, as Compose's replicas do
        aliases.append(sp.mesh_name)
    return aliases


def _alias_map(aliases: list[str]) -> CommentedMap:
    return CommentedMap([("aliases", CommentedSeq(aliases))])


def _add_aliases(owner: CommentedMap, sp: ServicePlan, options: InjectOptions) -> None:
    """Keep S resolvable by name: its network endpoint now belongs to S-netns."""
    aliases = _aliases_for(sp, options)
    networks = owner.get("networks")
    if networks is None:
        owner["networks"] = CommentedMap([("default", _alias_map(aliases))])
        return
    if isinstance(networks, CommentedSeq):
        owner["networks"] = seq_to_map(networks, lambda _item: _alias_map(aliases))
        return
    assert isinstance(networks, CommentedMap)
    for net in list(networks):
        config = networks[net]
        if config is None:
            networks[net] = _alias_map(aliases)
        elif isinstance(config, CommentedMap):
            existing = config.get("aliases")
            if isinstance(existing, CommentedSeq):
                with kept_tail(existing):
                    existing.extend(a for a in aliases if a not in existing)
            else:
                append(config, "aliases", CommentedSeq(aliases))


def _wire_app(app: CommentedMap, sp: ServicePlan, options: InjectOptions, notes: list[str]) -> None:
    """The app starts once its sidecar is healthy; explicit mode sets HTTP_PROXY."""
    with kept_tail(app):
        depends = app.get("depends_on")
        if isinstance(depends, CommentedSeq):
            depends = seq_to_map(depends, lambda _item: services.condition("service_started"))
            app["depends_on"] = depends
        if not isinstance(depends, CommentedMap):
            depends = CommentedMap()
            app["depends_on"] = depends
        append(depends, names.proxy(sp.name), services.condition("service_healthy"))
        if options.proxy_env and (options.mode == "explicit" or sp.shape == "host"):
            _set_proxy_env(app, sp, notes)


def _set_proxy_env(app: CommentedMap, sp: ServicePlan, notes: list[str]) -> None:
    values = services.proxy_env_values(sp)
    env = app.get("environment")
    if env is None:
        app["environment"] = CommentedMap(values.items())
        return
    if isinstance(env, CommentedMap):
        present = set(env)
    else:
        present = {str(item).split("=", 1)[0] for item in env}
    kept = [k for k in values if k in present]
    if kept:
        notes.append(f"{sp.name}: kept its own {', '.join(kept)}")
    missing = [(k, v) for k, v in values.items() if k not in present]
    with kept_tail(env):
        for key, value in missing:
            if isinstance(env, CommentedMap):
                env[key] = value
            else:
                env.append(f"{key}={value}")
