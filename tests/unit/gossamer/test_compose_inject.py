"""The rewrite `gossamer inject` makes, and `uninject`, on compose text."""

from __future__ import annotations

from typing import Any

import pytest

from gossamer.compose import generated_files
from gossamer.compose.inject import inject_text, uninject_text
from gossamer.compose.plan import InjectOptions
from gossamer.compose.validate import semantic_problems, structure_problems
from gossamer.errors import ConfigError, UsageError
from tests.helpers.compose import plain

APP = """\
# the shop
services:
  web:
    image: shop/web
    container_name: shop-web
    hostname: webhost
    ports:
      - "8080:8000"   # public site
    expose:
      - 9000
    networks:
      - front
      - back
    depends_on:
      - db
  db:
    image: postgres:16
    expose:
      - 5432
    networks:
      back:
        aliases: [database]
    sysctls:
      net.core.somaxconn: 1024
      kernel.shmmax: 1000
networks:
  front:
  back:
"""


def inject(text: str = APP, **kwargs) -> tuple[dict[str, Any], str]:
    result = inject_text(text, InjectOptions(**kwargs), source="compose.yaml")
    return plain(result.text), result.text


def test_transparent_shape():
    data, text = inject()
    services = data["services"]
    web = services["web"]
    assert web["network_mode"] == "service:web-netns"
    for key in ("ports", "expose", "networks", "hostname"):
        assert key not in web
    assert web["depends_on"] == {
        "db": {"condition": "service_started"},
        "web-proxy": {"condition": "service_healthy"},
    }
    owner = services["web-netns"]
    assert owner["ports"] == ["8080:8000"] and owner["expose"] == [9000]
    assert owner["hostname"] == "webhost"
    assert owner["networks"] == {
        "front": {"aliases": ["web", "shop-web"]},
        "back": {"aliases": ["web", "shop-web"]},
    }
    init = services["web-init"]
    assert "NET_ADMIN" in init["cap_add"]
    assert init["network_mode"] == "service:web-netns"
    cmd = init["command"]
    assert cmd[:3] == ["proxy", "iptables", "install"]
    # the published container port and the metrics port bypass interception; the admin
    # port (127.0.0.1) does not
    assert cmd[cmd.index("--exclude-inbound-ports") + 1] == "8000"
    assert cmd[cmd.index("--metrics-port") + 1] == "15090"
    assert "15000" not in " ".join(cmd)
    # the app's DNS goes to the sidecar's DNS port, where the sidecar listens
    assert cmd[cmd.index("--dns-port") + 1] == "15053"
    proxy = services["web-proxy"]
    assert proxy["network_mode"] == "service:web-netns"
    assert proxy["user"] == "1337:1337"
    args = proxy["command"]
    assert args[args.index("--service") + 1] == "web"
    assert [args[i + 1] for i, a in enumerate(args) if a == "--app-port"] == [
        "8000/http",
        "9000/http",
    ]
    assert args[args.index("--control") + 1] == "gossamer-control:15012"
    assert args[args.index("--token-file") + 1] == "/run/secrets/gossamer-token-web"
    # stable across restarts and recreation: its token admits this one instance id
    assert args[args.index("--instance-id") + 1] == "web"
    assert args[args.index("--namespace") + 1] == "default"
    assert proxy["secrets"] == ["gossamer-token-web"]
    # its state directory: a tmpfs volume of its UID, held open by web-netns too
    assert args[args.index("--state-dir") + 1] == "/run/gossamer/state"
    assert args[args.index("--dns-port") + 1] == "15053"
    assert proxy["volumes"] == ["gossamer-state-web:/run/gossamer/state"]
    assert data["volumes"]["gossamer-state-web"] == {
        "driver": "local",
        "driver_opts": {"type": "tmpfs", "device": "tmpfs", "o": "mode=0700,uid=1337,gid=1337"},
    }
    assert services["web-netns"]["volumes"] == ["gossamer-state-web:/run/gossamer/state:ro"]
    assert proxy["depends_on"]["web-init"] == {"condition": "service_completed_successfully"}
    assert "'127.0.0.1',15000" in " ".join(proxy["healthcheck"]["test"])
    assert proxy["depends_on"]["gossamer-control"] == {"condition": "service_healthy"}
    control = services["gossamer-control"]
    assert control["command"] == ["control", "--config", "/etc/gossamer/mesh.yaml"]
    assert "/healthz" in " ".join(control["healthcheck"]["test"])
    assert sorted(control["networks"]) == ["back", "front"]
    assert data["secrets"]["gossamer-token-web"] == {"file": ".gossamer/tokens/web.token"}
    assert data["secrets"]["gossamer-ca"] == {"file": ".gossamer/ca"}
    assert data["configs"]["gossamer-mesh"] == {"file": ".gossamer/mesh.yaml"}
    assert "gst1." not in text  # tokens live in files, never inline
    assert structure_problems(data) == []
    assert semantic_problems(APP, text) == []


def test_existing_aliases_and_net_sysctls_move_to_the_owner():
    data, _ = inject()
    owner = data["services"]["db-netns"]
    assert owner["networks"] == {"back": {"aliases": ["database", "db"]}}
    assert owner["sysctls"] == {"net.core.somaxconn": 1024}
    assert data["services"]["db"]["sysctls"] == {"kernel.shmmax": 1000}


def test_explicit_mode_needs_no_privileges():
    data, text = inject(mode="explicit")
    services = data["services"]
    assert not [n for n in services if n.endswith("-init")]
    assert "NET_ADMIN" not in text
    assert "web-init" not in services["web-proxy"]["depends_on"]
    env = services["web"]["environment"]
    assert env["HTTP_PROXY"] == "http://127.0.0.1:15001"
    assert env["NO_PROXY"].startswith("localhost")
    quiet, _ = inject(mode="explicit", proxy_env=False)
    assert "environment" not in quiet["services"]["web"]
    # explicit mode captures nothing, DNS included
    assert "--dns-port" not in services["web-proxy"]["command"]


def test_no_dns_capture_leaves_dns_alone_and_is_recorded():
    data, text = inject(dns_capture=False)
    assert "--dns-port" not in data["services"]["web-init"]["command"]
    assert "--dns-port" not in data["services"]["web-proxy"]["command"]
    assert data["x-gossamer"]["dns_capture"] is False
    # injecting again with the same options changes nothing; the default captures
    again = inject_text(text, InjectOptions(dns_capture=False), source="compose.yaml")
    assert not again.changed
    default = inject_text(text, InjectOptions(), source="compose.yaml")
    assert default.changed and "--dns-port" in default.text
    assert "dns_capture" not in inject()[0]["x-gossamer"]


def test_explicit_mode_keeps_a_users_own_proxy_setting():
    text = APP.replace(
        "    depends_on:\n      - db\n", "    environment:\n      - HTTP_PROXY=http://corp:3128\n"
    )
    result = inject_text(text, InjectOptions(mode="explicit"), source="compose.yaml")
    env = plain(result.text)["services"]["web"]["environment"]
    assert "HTTP_PROXY=http://corp:3128" in env and "NO_PROXY=localhost,127.0.0.1,::1" in env
    assert not any(e.startswith("HTTP_PROXY=http://127") for e in env)
    assert any("kept its own HTTP_PROXY" in n for n in result.notes)


def test_app_port_choice():
    text = """\
services:
  vpn:
    image: wg
    ports: ["51820:51820/udp"]
  api:
    image: api
    expose: ["7070"]
    ports: ["${PORT}:8000", "9229:9229"]
  tuned:
    image: t
    ports: ["80:80"]
    x-gossamer: {port: 8081, protocol: grpc}
"""
    result = inject_text(text, InjectOptions(), source="c.yaml")
    ports = {sp.name: (sp.app_port, sp.ports) for sp in result.plan.meshed}
    assert ports["vpn"] == (None, ())
    assert ports["api"] == (9229, ((9229, "http"), (7070, "http")))
    assert ports["tuned"] == (8081, ((8081, "grpc"), (80, "http")))
    args = plain(result.text)["services"]["vpn-proxy"]["command"]
    assert "--app-port" not in args


def test_opt_outs():
    text = APP.replace("  db:\n", "  db:\n    x-gossamer: {mesh: false}\n")
    data, _ = inject(text)
    assert data["services"]["db"] == plain(text)["services"]["db"]
    assert "db-proxy" not in data["services"] and "db-netns" not in data["services"]
    data, _ = inject(exclude=("web",))
    assert data["services"]["web"] == plain(APP)["services"]["web"]
    assert "db-proxy" in data["services"] and "web-proxy" not in data["services"]
    data, _ = inject(only=("web",))
    assert "db-proxy" not in data["services"] and "web-proxy" in data["services"]
    assert data["x-gossamer"]["meshed"] == ["web"]


def test_option_mistakes_are_usage_errors():
    with pytest.raises(UsageError, match="no such service"):
        inject(only=("nope",))
    text = APP.replace("  db:\n", "  db:\n    x-gossamer: {mesh: false}\n")
    with pytest.raises(UsageError, match="mesh: false"):
        inject(text, only=("db",))
    with pytest.raises(UsageError):
        InjectOptions(only=("a",), exclude=("a",))
    with pytest.raises(UsageError):
        InjectOptions(mode="magic")


def test_bad_extension_settings_name_the_line():
    text = APP.replace("  db:\n", "  db:\n    x-gossamer: {mesh: maybe}\n")
    with pytest.raises(ConfigError) as info:
        inject(text)
    assert info.value.line == 17 and "x-gossamer.mesh" in info.value.message
    with pytest.raises(ConfigError, match="unknown setting"):
        inject(APP.replace("  db:\n", "  db:\n    x-gossamer: {sidecar: yes}\n"))


def test_network_modes():
    text = """\
services:
  app:
    image: a
    ports: ["80:80"]
  helper:
    image: h
    network_mode: service:app
  media:
    image: m
    network_mode: host
  offline:
    image: o
    network_mode: none
"""
    result = inject_text(text, InjectOptions(observability=True), source="c.yaml")
    data = plain(result.text)
    services = data["services"]
    assert services["helper"]["network_mode"] == "service:app-netns"
    skipped = dict(result.plan.skipped)
    assert "helper" in skipped and "offline" in skipped
    assert "media-netns" not in services and "media-init" not in services
    assert services["media-proxy"]["network_mode"] == "host"
    assert "127.0.0.1:15012" in services["media-proxy"]["command"]
    assert "127.0.0.1:15012:15012" in services["gossamer-control"]["ports"]
    assert services["media"]["environment"]["HTTP_PROXY"] == "http://127.0.0.1:15001"
    assert structure_problems(data) == []
    with pytest.raises(UsageError, match="network_mode: none"):
        inject_text(text, InjectOptions(only=("offline",)), source="c.yaml")


def test_links_follow_the_namespace_owner():
    text = "services:\n  a:\n    image: a\n  b:\n    image: b\n    links: [a, 'a:alpha']\n"
    data, _ = inject(text)
    assert data["services"]["b-netns"]["links"] == ["a-netns:a", "a-netns:alpha"]


def test_replicas_cannot_be_meshed():
    text = "services:\n  a:\n    image: a\n    deploy:\n      replicas: 3\n  b:\n    image: b\n"
    with pytest.raises(ConfigError) as info:
        inject(text)
    assert info.value.line == 4 and "--exclude a" in (info.value.hint or "")
    data, _ = inject(text, exclude=("a",))
    assert "b-proxy" in data["services"]


def test_name_collisions():
    text = "services:\n  a:\n    image: a\n  a-proxy:\n    image: x\n"
    with pytest.raises(ConfigError, match="'a-proxy' is needed"):
        inject(text)
    inject(text, exclude=("a",))  # a-proxy is just a service then
    with pytest.raises(ConfigError, match="'jaeger'"):
        inject("services:\n  a:\n    image: a\n  jaeger:\n    image: j\n", observability=True)
    with pytest.raises(ConfigError, match="same as a_b"):
        inject("services:\n  a_b:\n    image: a\n  a.b:\n    image: b\n")


def test_mesh_names_are_dns_labels():
    result = inject_text("services:\n  Flask_App:\n    image: a\n", InjectOptions(), source="c")
    (sp,) = result.plan.meshed
    assert sp.mesh_name == "flask-app"
    args = plain(result.text)["services"]["Flask_App-proxy"]["command"]
    assert args[args.index("--service") + 1] == "flask-app"


def test_observability():
    text = APP.replace(
        "    expose:\n      - 9000\n", "    expose:\n      - 9000\n    ports:\n      - 9090:9090\n"
    ).replace('    ports:\n      - "8080:8000"   # public site\n', "")
    result = inject_text(text, InjectOptions(observability=True), source="c.yaml")
    services = plain(result.text)["services"]
    assert services["jaeger"]["image"].startswith("jaegertracing/jaeger:2.")
    assert "127.0.0.1:16686:16686" in services["jaeger"]["ports"]
    assert "ports" not in services["prometheus"]  # 9090 is the user's
    assert any("9090" in n for n in result.notes)
    env = services["web-proxy"]["environment"]
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4317"
    assert plain(result.text)["configs"]["gossamer-prometheus"] == {
        "file": ".gossamer/prometheus.yml"
    }


def test_inject_twice_changes_nothing_and_other_options_reinject_from_the_original():
    first = inject_text(APP, InjectOptions(), source="c.yaml")
    again = inject_text(first.text, InjectOptions(), source="c.yaml")
    assert again.text == first.text and not again.changed
    explicit = inject_text(first.text, InjectOptions(mode="explicit"), source="c.yaml")
    assert explicit.changed
    assert explicit.text == inject_text(APP, InjectOptions(mode="explicit"), source="c.yaml").text
    assert uninject_text(explicit.text, source="c.yaml") == APP


def test_an_edited_injection_is_never_silently_overwritten():
    first = inject_text(APP, InjectOptions(), source="c.yaml").text
    edited = first.replace("image: postgres:16", "image: postgres:17")
    same = inject_text(edited, InjectOptions(), source="c.yaml")
    assert same.text == edited and not same.changed
    with pytest.raises(ConfigError, match="edited after it was injected"):
        inject_text(edited, InjectOptions(mode="explicit"), source="c.yaml")
    with pytest.raises(ConfigError, match="edited after it was injected"):
        uninject_text(edited, source="c.yaml")
    assert uninject_text(edited, source="c.yaml", force=True) == APP


@pytest.mark.parametrize(
    "original",
    [
        APP,
        "\n\nservices:\n  a:\n    image: a   \n  #\ttab comment  \n",
        "services:\n  a:\n    image: a\n    ports: ['1:1']",  # no newline at the end
        "services:\r\n  a:\r\n    image: a\r\n",
        "%YAML 1.2\n---\nservices:\n  a:\n    image: 'é'  # ünïcode\n...\n",
    ],
)
def test_uninject_restores_byte_for_byte(original):
    injected = inject_text(original, InjectOptions(), source="c.yaml").text
    assert uninject_text(injected, source="c.yaml") == original


def test_uninject_of_a_plain_file_and_of_a_damaged_record():
    with pytest.raises(ConfigError, match="not an injected file"):
        uninject_text(APP, source="c.yaml")
    injected = inject_text(APP, InjectOptions(), source="c.yaml").text
    lines = injected.splitlines(keepends=True)
    index = next(i for i, ln in enumerate(lines) if ln.startswith("  original:")) + 1
    lines[index] = "    !!!!\n"
    with pytest.raises(ConfigError, match="damaged") as info:
        uninject_text("".join(lines), source="c.yaml")
    assert info.value.line is not None


def test_a_user_x_gossamer_top_level_key_is_refused():
    with pytest.raises(ConfigError, match="reserved"):
        inject(APP + "x-gossamer: {mine: 1}\n")


def test_merge_keys_that_would_have_to_move_are_refused():
    text = "x-net: &net\n  ports: ['80:80']\nservices:\n  a:\n    <<: *net\n    image: a\n"
    with pytest.raises(ConfigError, match="YAML merge"):
        inject(text)


TORTURE = """\
# head comment
services:  # all of them
  # before web
  web:  # web key
    image: w  # image eol
    # before ports
    ports:  # ports key
      # inside ports
      - "80:80"  # port eol
      # after port
    networks:  # nets
      - front  # front eol
      # between nets
      - back  # back eol
    depends_on:  # deps
      - db  # db dep
    sysctls:
      - net.ipv4.ip_forward=1  # net one
      - kernel.msgmax=65536  # kernel one
    # end of web
  db:
    image: d
    hostname: dbhost  # last key of db
  # before networks
networks:
  front:  # front net
  back:
# tail comment
"""


def test_every_comment_survives_and_stays_sensible():
    data, text = inject(TORTURE)
    assert semantic_problems(TORTURE, text) == []
    services = data["services"]
    assert services["web-netns"]["sysctls"] == ["net.ipv4.ip_forward=1"]
    assert services["web"]["sysctls"] == ["kernel.msgmax=65536"]
    assert services["web-netns"]["networks"] == {
        "front": {"aliases": ["web"]},
        "back": {"aliases": ["web"]},
    }
    assert services["db-netns"]["hostname"] == "dbhost"
    # comments that follow a moved value travel with it; the rest stay put
    assert text.index("# net one") > text.index("web-netns:")
    assert text.index("# kernel one") < text.index("web-netns:")
    assert text.index("# head comment") == 0
    assert text.index("# before networks") < text.index("\nnetworks:")
    assert uninject_text(text, source="compose.yaml") == TORTURE


def test_included_services_are_not_dangling():
    text = "include:\n  - other.yaml\nservices:\n  a:\n    image: a\n    depends_on: [from-other]\n"
    data, out = inject(text)
    assert data["services"]["a"]["depends_on"]["from-other"] == {"condition": "service_started"}
    assert semantic_problems(text, out) == []


REPLICAS = """\
services:
  web:
    image: w
    ports: ["8000:8000"]
  catalog:
    image: c
    expose: [8080]
    x-gossamer: {service: catalog}
  catalog-2:
    image: c
    expose: [8080]
    x-gossamer: {service: catalog}  # a second replica of the same mesh service
"""


def test_replicas_share_one_mesh_service():
    result = inject_text(REPLICAS, InjectOptions(), source="c.yaml")
    by_name = {sp.name: sp for sp in result.plan.meshed}
    assert by_name["catalog-2"].mesh_name == by_name["catalog"].mesh_name == "catalog"
    assert by_name["catalog-2"].named and not by_name["web"].named
    services = plain(result.text)["services"]
    args = services["catalog-2-proxy"]["command"]
    assert args[args.index("--service") + 1] == "catalog"
    # both answer to the service's name, as replicas of one Compose service do
    assert services["catalog-2-netns"]["networks"]["default"]["aliases"] == ["catalog-2", "catalog"]
    assert services["catalog-netns"]["networks"]["default"]["aliases"] == ["catalog"]
    # each replica has its own join token, both scoped to the mesh service
    assert services["catalog-2-proxy"]["secrets"] == ["gossamer-token-catalog-2"]
    mesh = generated_files.mesh_yaml(
        result.plan, trust_domain="td", namespace="default", source="c"
    )
    assert mesh.count('name: "catalog"') == 1
    assert structure_problems(plain(result.text)) == []


def test_replica_mistakes_name_the_line():
    with pytest.raises(ConfigError, match="would be the same as catalog's"):
        inject(REPLICAS.replace("    x-gossamer: {service: catalog}\n", "", 1).replace(
            "    x-gossamer: {service: catalog}  # a second replica of the same mesh service\n",
            "  Catalog:\n    image: c\n",
        ))  # fmt: skip
    different = REPLICAS.replace("    expose: [8080]\n    x-gossamer: {service: catalog}  #",
                                 "    expose: [9090]\n    x-gossamer: {service: catalog}  #")  # fmt: skip
    with pytest.raises(ConfigError, match="declare different ports") as info:
        inject(different)
    assert info.value.line == 9  # the replica's own key
    with pytest.raises(ConfigError) as info:
        inject(REPLICAS.replace("{service: catalog}  #", "{service: Catalog_2}  #"))
    assert "x-gossamer.service" in info.value.message and info.value.line == 12


@pytest.mark.parametrize(
    ("service", "version"),
    [
        ({"image": "shop/web:1.4.2"}, "1.4.2"),
        ({"image": "registry.local:5000/shop/web:2.0"}, "2.0"),
        ({"image": "registry.local:5000/shop/web"}, ""),  # the port is not a tag
        ({"image": "shop/web:latest"}, ""),
        ({"image": "shop/web@sha256:abc"}, ""),
        ({"image": "shop/web:1", "labels": {"gossamer.version": "1.2.3-rc1"}}, "1.2.3-rc1"),
        ({"image": "shop/web:1", "labels": ["a=b", "gossamer.version=7"]}, "7"),
        ({"build": "."}, ""),
    ],
)
def test_service_version_from_label_or_image_tag(service, version):
    from gossamer.compose.plan import service_version

    assert service_version(service) == version


def test_observability_passes_the_service_version_to_the_sidecar():
    text = (
        "services:\n  web:\n    image: shop/web:1.4.2\n    expose: [8000]\n  db:\n    image: db\n"
    )
    result = inject_text(text, InjectOptions(observability=True), source="c.yaml")
    services = plain(result.text)["services"]
    assert services["web-proxy"]["environment"]["GOSSAMER_SERVICE_VERSION"] == "1.4.2"
    assert "GOSSAMER_SERVICE_VERSION" not in services["db-proxy"]["environment"]
