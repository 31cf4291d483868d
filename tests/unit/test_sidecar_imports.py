"""What a sidecar process loads: each module costs resident memory in every sidecar.

The sidecar's memory target (<= 60 MB, bench/proxy_http1.py) has little margin, and a
single convenience import can pull a whole library in. These run a fresh interpreter
that imports what `gossamer proxy` imports in control-plane mode and check that
libraries only other commands need stay out.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

SIDECAR_IMPORTS = "import gossamer.cli.main, gossamer.cli.proxy_cmd, gossamer.proxy.main"


@pytest.fixture(scope="module")
def loaded() -> set[str]:
    code = f"import json, sys; {SIDECAR_IMPORTS}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout))


@pytest.mark.parametrize(
    "library",
    [
        "ruamel.yaml",  # mesh.yaml and compose files: the control plane and the CLI
        "aiohttp",  # the operator API
        "grpc",  # grpcio: the control plane's server; the sidecar has its own h2 client
        "gossamer.control",
        "gossamer.discovery",
    ],
)
def test_sidecar_does_not_load(loaded: set[str], library: str) -> None:
    assert library not in loaded
