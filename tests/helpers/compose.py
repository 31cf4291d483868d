"""Helpers for the compose injection tests: the sample files and the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import REPO

# Real compose files from docker/awesome-compose (CC0); see the folder's README.md.
SAMPLES = REPO / "tests" / "data" / "compose-samples"


def sample_paths() -> list[Path]:
    """Every sample compose file in tests/data/compose-samples, sorted by name."""
    return sorted(p for p in SAMPLES.iterdir() if p.suffix in (".yaml", ".yml"))


def run_cli(
    *args: str, cwd: Path, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`gossamer ARGS` as a separate process, in `cwd` (with `env` if given)."""
    return subprocess.run(
        [sys.executable, "-m", "gossamer.cli.main", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def plain(text: str) -> dict[str, Any]:
    """A compose text as plain Python data."""
    from ruamel.yaml import YAML

    data = YAML(typ="safe", pure=True).load(text)
    assert isinstance(data, dict)
    return data
