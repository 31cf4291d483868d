"""`gossamer inject --with-observability` with its default bootstrap (files under
`.gossamer/`, handed to the containers as Compose secrets) on a real Docker Engine.

The plain demo file is meshed here with the real CLI; Prometheus (running as nobody,
65534) must read the control plane's `/v1/http_sd` with the viewer token of
`.gossamer/prometheus.token` (a secret mounted in Prometheus and the control plane at
the same place) and scrape every sidecar's metrics port, while the same endpoint
refuses a caller without that token. `tests/docker/compose.override.yaml` swaps in the
local Jaeger and Prometheus images.
"""

from __future__ import annotations

import json
import shutil
import stat
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from gossamer.contract.ports import METRICS_PORT
from tests.conftest import REPO
from tests.helpers.compose import run_cli
from tests.helpers.docker_compose import ComposeProject, require_engine, unique_project_name

pytestmark = [pytest.mark.docker, pytest.mark.e2e, pytest.mark.timeout(600)]

PLAIN = REPO / "gossamer" / "demo" / "compose.plain.yaml"
API = "http://127.0.0.1:15014"
PROMETHEUS = "http://127.0.0.1:9090"
SIDECARS = 5  # web, catalog, catalog-2, inventory, loadgen


def get_json(url: str, token: str | None = None) -> Any:
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def sidecar_targets() -> list[dict[str, Any]]:
    active = get_json(f"{PROMETHEUS}/api/v1/targets?state=active")["data"]["activeTargets"]
    return [t for t in active if t["labels"]["job"] == "gossamer-sidecars"]


def test_prometheus_reads_http_sd_with_the_token_secret(tmp_path: Path):
    require_engine()
    shutil.copyfile(PLAIN, tmp_path / "compose.yaml")
    proc = run_cli(
        "inject", "compose.yaml", "-o", "compose.meshed.yaml", "--with-observability",
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    token_file = tmp_path / ".gossamer" / "prometheus.token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / ".gossamer").stat().st_mode) == 0o700
    project = ComposeProject(
        unique_project_name("gossamer-observability-files"),
        [tmp_path / "compose.meshed.yaml", REPO / "tests/docker/compose.override.yaml"],
        cwd=tmp_path,
    )
    project.down_clean()
    try:
        project.up(timeout=180)
        deadline, targets = time.monotonic() + 90, []
        while time.monotonic() < deadline:
            targets = sidecar_targets()
            if sum(t["health"] == "up" for t in targets) >= SIDECARS:
                break
            time.sleep(2)
        assert sum(t["health"] == "up" for t in targets) == SIDECARS, targets
        assert all(t["labels"]["instance"].endswith(f":{METRICS_PORT}") for t in targets)
        with pytest.raises(urllib.error.HTTPError) as refused:
            get_json(f"{API}/v1/http_sd")
        assert refused.value.code == 401
        groups = get_json(f"{API}/v1/http_sd", token_file.read_text().strip())
        assert len(groups) == SIDECARS
    finally:
        project.down_clean()
