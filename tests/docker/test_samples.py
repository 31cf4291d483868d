"""Real compose samples, injected and run on the Docker Engine (issue 16, item 3).

For each sample of tests/data/compose-samples/ whose images can be built here from
Debian packages: the compose file and its build contexts (tests/docker/samples/<name>/,
our own code) go to a temporary folder, the real `gossamer inject` meshes it, and
`docker compose up --wait` starts it with the sample's override (local images,
ephemeral host ports). Then:

- the sample's own health checks pass (Docker reports its services healthy);
- a request from the host to the sample's published front port answers end to end;
- the traffic between its services went through the sidecars: the callee's sidecar
  counts the requests or connections it received over mutual TLS from the caller's
  SPIFFE identity (and, for HTTP, the caller's sidecar counts them as sent). A call that
  bypassed the sidecars would reach the app directly and count nowhere;
- `docker compose down -v` leaves no container, network or volume of the project.

Samples: nginx-wsgi-flask (nginx -> flask, HTTP, both with their own health checks),
flask-redis (flask -> redis, TCP) and nginx-flask-mysql (nginx -> flask -> MariaDB on two
networks, with a secret, a volume and the db's own health check). Its nginx -> flask hop
reaches backend on the one network they share (frontnet), which is not the address the
control plane saw backend's sidecar at: the sidecar registers all its addresses and the
caller's sidecar connects on the shared network (EDS additional_addresses).

Builds are cached under `gossamer-sample/<sample>-<image>:<hash of its folder>`.
"""

from __future__ import annotations

import contextlib
import http.client
import shutil
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.helpers.compose import SAMPLES, run_cli
from tests.helpers.docker_compose import ComposeProject, require_engine, unique_project_name
from tests.helpers.docker_images import cached_image
from tests.helpers.metrics_text import metric_sum

pytestmark = pytest.mark.docker

CONTEXTS = REPO / "tests" / "docker" / "samples"
UP_TIMEOUT = 150  # seconds for every container to be running and healthy
TRUST_DOMAIN = "gossamer.local"  # the default of `gossamer inject`
ADMIN_PORT = 15000  # the sidecar's admin server, inside its service's namespace


@dataclass(frozen=True)
class Image:
    """An image the sample's override names through `${variable}`."""

    variable: str
    context: str  # folder under tests/docker/samples/<sample>/, "." for its root
    target: str | None = None


@dataclass(frozen=True)
class Sample:
    """A sample compose file (`<name>.yaml`) and the images its override needs."""

    name: str
    images: tuple[Image, ...] = field(default=())


NGINX_WSGI_FLASK = Sample(
    "nginx-wsgi-flask",
    (Image("NGINX_IMAGE", "nginx"), Image("FLASK_IMAGE", "flask")),
)
NGINX_FLASK_MYSQL = Sample(
    "nginx-flask-mysql",
    (
        Image("PROXY_IMAGE", "proxy"),
        Image("BACKEND_IMAGE", "backend", target="builder"),
        Image("DB_IMAGE", "db"),
    ),
)
FLASK_REDIS = Sample(
    "flask-redis",
    (Image("WEB_IMAGE", ".", target="builder"), Image("REDIS_IMAGE", "redis")),
)


def prepare(sample: Sample, workdir: Path) -> dict[str, str]:
    """Put the sample (as compose.yaml) and its build contexts and override in
    `workdir`; build or reuse its images. Returns the override's variables."""
    shutil.copytree(CONTEXTS / sample.name, workdir, dirs_exist_ok=True)
    shutil.copyfile(SAMPLES / f"{sample.name}.yaml", workdir / "compose.yaml")
    env = {}
    for image in sample.images:
        context = (CONTEXTS / sample.name / image.context).resolve()
        suffix = "" if image.context == "." else f"-{context.name}"
        repository = f"gossamer-sample/{sample.name}{suffix}"
        env[image.variable] = cached_image(repository, context, image.target)
    return env


def inject(workdir: Path) -> Path:
    """`gossamer inject compose.yaml -o compose.meshed.yaml` (the real CLI)."""
    proc = run_cli("inject", "compose.yaml", "-o", "compose.meshed.yaml", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    return workdir / "compose.meshed.yaml"


@contextlib.contextmanager
def running(sample: Sample, workdir: Path) -> Iterator[ComposeProject]:
    """The sample injected in `workdir` and up (healthy); afterwards taken down, and
    nothing of it may be left."""
    require_engine()
    workdir.mkdir(parents=True)
    env = prepare(sample, workdir)
    meshed = inject(workdir)
    project = ComposeProject(
        unique_project_name(f"gossamer-sample-{sample.name}"),
        [meshed, workdir / "compose.override.yaml"],
        cwd=workdir,
        env=env,
    )
    try:
        project.up(timeout=UP_TIMEOUT)
        yield project
    finally:
        project.down_clean()


@pytest.fixture
def start_sample(tmp_path: Path) -> Iterator[Callable[[Sample], ComposeProject]]:
    """A function that injects and starts a sample, taken down after the test."""
    with contextlib.ExitStack() as stack:
        yield lambda sample: stack.enter_context(running(sample, tmp_path / sample.name))


@pytest.fixture(scope="module")
def flask_mysql(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeProject]:
    """nginx-flask-mysql, up for the tests of this module that need it."""
    with running(NGINX_FLASK_MYSQL, tmp_path_factory.mktemp("samples") / "mysql") as project:
        yield project


def sidecar_metrics(project: ComposeProject, service: str) -> str:
    """The Prometheus text of SERVICE's sidecar (`<service>-proxy`), from its admin port."""
    script = (
        "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen("
        f"'http://127.0.0.1:{ADMIN_PORT}/metrics', timeout=5).read().decode())"
    )
    return project.exec(f"{service}-proxy", ["python3", "-c", script]).stdout


def http_get(project: ComposeProject, service: str, port: int, path: str) -> str:
    """GET `path` from the host on the port SERVICE's `port` is published on (its
    `-netns` container holds the ports once injected); the body, after a 200."""
    host, host_port = project.port(f"{service}-netns", port)
    # Compose reports a service without a health check up once it started, maybe before
    # its app listens: Docker's port proxy then closes the connection without a reply.
    # Such a request never reached the app (a count the app keeps would show a repeat).
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://{host}:{host_port}{path}", timeout=10) as resp:
                assert resp.status == 200
                return str(resp.read().decode())
        except (ConnectionResetError, http.client.RemoteDisconnected):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def spiffe_id(service: str) -> str:
    return f"spiffe://{TRUST_DOMAIN}/ns/default/sa/{service}"


def test_nginx_wsgi_flask(start_sample: Callable[[Sample], ComposeProject]) -> None:
    """nginx -> flask (gunicorn): both own health checks pass once meshed, the host's
    requests to nginx reach flask, and each one crossed nginx's and flask's sidecars
    over mTLS as nginx-proxy -> flask-app."""
    project = start_sample(NGINX_WSGI_FLASK)
    # the sample's own checks: curl localhost:80/health-check, localhost:8000/flask-health-check
    assert project.health("nginx-proxy") == "healthy"
    assert project.health("flask-app") == "healthy"
    meshed = {
        "source_service": "nginx-proxy",
        "destination_service": "flask-app",
        "connection_security_policy": "mutual_tls",
        "response_code": "200",
    }

    def counted() -> tuple[float, float]:
        """(received by flask's sidecar, sent by nginx's) meshed requests so far."""
        return (
            metric_sum(
                sidecar_metrics(project, "flask-app"), "gossamer_requests_total",
                reporter="destination", **meshed,
            ),
            metric_sum(
                sidecar_metrics(project, "nginx-proxy"), "gossamer_requests_total",
                reporter="source", **meshed,
            ),
        )  # fmt: skip

    received, sent = counted()
    requests = 5
    for _ in range(requests):
        assert http_get(project, "nginx-proxy", 80, "/") == "Hello World!"
    assert http_get(project, "nginx-proxy", 80, "/health-check") == "success"  # nginx only

    received_after, sent_after = counted()
    assert received_after - received == requests
    assert sent_after - sent == requests


def test_flask_redis(start_sample: Callable[[Sample], ComposeProject]) -> None:
    """flask -> redis (TCP): the host's page views are counted in Redis, and the
    connection from web to redis crossed both sidecars over mTLS, the redis sidecar
    seeing web's SPIFFE identity."""
    project = start_sample(FLASK_REDIS)
    assert http_get(project, "web", 8000, "/") == "This webpage has been viewed 1 time(s)"
    assert http_get(project, "web", 8000, "/") == "This webpage has been viewed 2 time(s)"

    meshed = {
        "reporter": "destination",
        "source_service": "web",
        "destination_service": "redis",
        "connection_security_policy": "mutual_tls",
        "source_principal": spiffe_id("web"),
        "destination_principal": spiffe_id("redis"),
    }
    metrics = sidecar_metrics(project, "redis")
    # (bytes are counted when a connection closes; redis-py keeps its connection open)
    assert metric_sum(metrics, "gossamer_tcp_connections_opened_total", **meshed) >= 1
    # and Redis sees web's connection (its last command INCRBY) come from its own
    # sidecar on loopback, not from web's address
    listing = project.exec("redis", ["redis-cli", "CLIENT", "LIST"]).stdout
    clients = [dict(kv.split("=", 1) for kv in line.split()) for line in listing.splitlines()]
    web = [c for c in clients if c.get("cmd") == "incrby"]
    assert web, listing
    assert all(c["addr"].startswith("127.0.0.1:") for c in web), listing


def test_nginx_flask_mysql(flask_mysql: ComposeProject) -> None:
    """nginx -> flask -> MariaDB, on two networks (frontnet, backnet), with a secret and a
    volume: the db's own health check (mysqladmin ping) passes once meshed and gates the
    backend, the host's request lists the posts the backend wrote to the db, and the
    backend's connection to the db crossed both sidecars over mTLS."""
    project = flask_mysql
    assert project.health("db") == "healthy"
    body = http_get(project, "proxy", 80, "/")
    assert body == "".join(f"<div>   Hello  Blog post #{i}</div>" for i in range(1, 5))
    to_db = metric_sum(
        sidecar_metrics(project, "db"), "gossamer_tcp_connections_opened_total",
        reporter="destination", source_service="backend", destination_service="db",
        connection_security_policy="mutual_tls", source_principal=spiffe_id("backend"),
    )  # fmt: skip
    assert to_db >= 1


def test_nginx_flask_mysql_frontnet_hop_is_meshed(flask_mysql: ComposeProject) -> None:
    """proxy -> backend across networks: backend's sidecar counts the request as mTLS
    from proxy (before multi-network endpoints it went out in plaintext, through the
    PassthroughCluster)."""
    project = flask_mysql
    labels = {
        "reporter": "destination",
        "source_service": "proxy",
        "destination_service": "backend",
        "connection_security_policy": "mutual_tls",
    }
    before = metric_sum(sidecar_metrics(project, "backend"), "gossamer_requests_total", **labels)
    assert "Blog post #1" in http_get(project, "proxy", 80, "/")
    after = metric_sum(sidecar_metrics(project, "backend"), "gossamer_requests_total", **labels)
    assert after - before == 1
