"""The `observability:` section of mesh.yaml, typed and validated once.

```yaml
observability:
  prometheus_url: http://prometheus:9090   # stat/edges/top and the dashboard use PromQL
  jaeger_url: http://localhost:16686       # the dashboard links each service's traces
  certificate_warning: 6h                  # warn when a sidecar certificate is this close to expiry
  window: 1m                               # default rate window
  history: 1h                              # embedded metric history (off: none)
  history_step: 10s                        # its resolution (the periodic scrape)
  http_sd: token                           # /v1/http_sd needs a viewer token (or: open)
  prometheus_token_file: /run/gossamer/prometheus/token   # a viewer token for Prometheus
```

Every key is optional. Without `prometheus_url` the figures come from the sidecars'
live /metrics through the control plane. `parse_observability` takes the section's
`Node` (the control plane's config parser can call it); `load_observability` reads only
this section of a mesh.yaml, plus the operator API address and data directory the CLI
needs to reach the control plane. Keys and defaults are the schema's
(gossamer/meshconfig/schema.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from gossamer.contract.ports import API_PORT
from gossamer.meshconfig import schema
from gossamer.yamlconf import Node, attempt, load_file, parse_duration

KEYS = schema.OBSERVABILITY_KEYS
DEFAULT_API = f"http://127.0.0.1:{API_PORT}"
_FIELDS = schema.OBSERVABILITY
_WARNING = parse_duration(_FIELDS["certificate_warning"].default)
_WINDOW = parse_duration(_FIELDS["window"].default)
_HISTORY = parse_duration(_FIELDS["history"].default)
_HISTORY_STEP = parse_duration(_FIELDS["history_step"].default)
MAX_HISTORY_POINTS = 8640


@dataclass(frozen=True)
class ObservabilitySettings:
    prometheus_url: str | None = None
    jaeger_url: str | None = None
    certificate_warning: float = _WARNING
    window: float = _WINDOW
    http_sd_open: bool = False  # /v1/http_sd without an API token
    prometheus_token_file: Path | None = None
    history: float = _HISTORY  # seconds; 0: no embedded history
    history_step: float = _HISTORY_STEP


def _url(node: Node) -> str | None:
    value = node.optional_string()
    if value is None or value == "":
        return None
    try:
        parts = urlsplit(value)
    except ValueError:  # e.g. a bracketed host that is not an IP address
        raise node.error(f"expected an http(s) URL, got {value!r}") from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise node.error(f"expected an http(s) URL, got {value!r}")
    return value.rstrip("/")


def parse_observability(node: Node, *, base_dir: Path | None = None) -> ObservabilitySettings:
    """The section under `node`; a relative `prometheus_token_file` is taken from
    `base_dir` (mesh.yaml's folder)."""
    if node.is_missing or node.value is None:
        return ObservabilitySettings()
    node.check_keys(KEYS)

    def token_file() -> Path | None:
        value = _FIELDS["prometheus_token_file"].read(node).optional_string()
        if not value:
            return None
        path = Path(value)
        return base_dir / path if base_dir is not None and not path.is_absolute() else path

    def window() -> float:
        window_node = _FIELDS["window"].read(node)
        value = window_node.duration()
        if value < (_FIELDS["window"].minimum or 0):
            raise window_node.error("the window must be at least 2s")
        return value

    def history_step() -> float:
        field = _FIELDS["history_step"]
        step_node = field.read(node)
        value = step_node.duration()
        if not (field.minimum or 0) <= value <= (field.maximum or value):
            raise step_node.error(f"must be between 1s and 5m, got {step_node.value!r}")
        return value

    step = attempt(history_step, _HISTORY_STEP)

    def history() -> float:
        field = _FIELDS["history"]
        length_node = field.read(node)
        if length_node.value in ("off", False, 0):
            return 0.0
        value = length_node.duration()
        if value > (field.maximum or value):
            raise length_node.error(f"must be at most 24h, got {length_node.value!r}")
        if 0 < value < step:
            raise length_node.error(f"must be at least history_step ({step:g}s) or off")
        if value / step > MAX_HISTORY_POINTS:
            raise length_node.error(
                f"{length_node.value} at {step:g}s steps is more than {MAX_HISTORY_POINTS} "
                "points a series; use a longer history_step"
            )
        return value

    return ObservabilitySettings(
        history=attempt(history, _HISTORY),
        history_step=step,
        prometheus_url=attempt(lambda: _url(_FIELDS["prometheus_url"].read(node)), None),
        jaeger_url=attempt(lambda: _url(_FIELDS["jaeger_url"].read(node)), None),
        certificate_warning=attempt(
            lambda: _FIELDS["certificate_warning"].read(node).duration(), _WARNING
        ),
        window=attempt(window, _WINDOW),
        http_sd_open=attempt(lambda: _FIELDS["http_sd"].choice(node) == "open", False),
        prometheus_token_file=attempt(token_file, None),
    )


@dataclass(frozen=True)
class CliTargets:
    """What the CLI learns from a mesh.yaml: observability and how to reach the API."""

    observability: ObservabilitySettings
    api_url: str | None = None
    admin_token_file: Path | None = None


def load_observability(path: Path) -> CliTargets:
    root = load_file(path)
    settings = parse_observability(root.child("observability", None))
    control = root.child("control", None)
    api_url = None
    token_file = None
    if control.value is not None and not control.is_missing:
        listen = control.child("api_listen", None).optional_string()
        if listen:
            host, _, port = listen.rpartition(":")
            host = host.strip("[]")
            if host in ("", "0.0.0.0", "::"):
                host = "127.0.0.1"
            api_url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
        data_dir = control.child("data_dir", None).optional_string()
        if data_dir:
            token_file = (path.parent / data_dir / "admin-token").resolve()
    return CliTargets(settings, api_url, token_file)
