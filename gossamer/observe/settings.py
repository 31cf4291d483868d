"""The `observability:` section of mesh.yaml, typed and validated once.

```yaml
observability:
  prometheus_url: http://prometheus:9090   # stat/edges/top and the dashboard use PromQL
  jaeger_url: http://localhost:16686       # the dashboard links each service's traces
  certificate_warning: 6h                  # warn when a sidecar certificate is this close to expiry
  window: 1m                               # default rate window
```

Every key is optional. Without `prometheus_url` the figures come from the sidecars'
live /metrics through the control plane. `parse_observability` takes the section's
`Node` (the control plane's config parser can call it); `load_observability` reads only
this section of a mesh.yaml, plus the operator API address and data directory the CLI
needs to reach the control plane.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from gossamer.yamlconf import Node, load_file

KEYS = ("prometheus_url", "jaeger_url", "certificate_warning", "window")
DEFAULT_API = "http://127.0.0.1:15014"


@dataclass(frozen=True)
class ObservabilitySettings:
    prometheus_url: str | None = None
    jaeger_url: str | None = None
    certificate_warning: float = 6 * 3600.0
    window: float = 60.0


def _url(node: Node) -> str | None:
    value = node.optional_string()
    if value is None or value == "":
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise node.error(f"expected an http(s) URL, got {value!r}")
    return value.rstrip("/")


def parse_observability(node: Node) -> ObservabilitySettings:
    if node.is_missing or node.value is None:
        return ObservabilitySettings()
    node.check_keys(KEYS)
    warning = node.child("certificate_warning", "6h")
    window = node.child("window", "1m")
    settings = ObservabilitySettings(
        prometheus_url=_url(node.child("prometheus_url", None)),
        jaeger_url=_url(node.child("jaeger_url", None)),
        certificate_warning=warning.duration(),
        window=window.duration(),
    )
    if settings.window < 2:
        raise window.error("the window must be at least 2s")
    return settings


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
