"""`gossamer validate` (and its alias `gossamer registry validate`, and `gossamer control`
on the same file): every error of a mesh.yaml, one `FILE:LINE: field: message` line each,
exit 1; the README's examples are valid. Runs the installed `gossamer` command."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gossamer.meshconfig.reference import reference_markdown

GOSSAMER = str(Path(sys.executable).with_name("gossamer"))
README = Path(__file__).resolve().parents[3] / "README.md"

THREE_MISTAKES = """\
trust_domain: gossamer.local
control:
  api_listen: 127.0.0.1:15014
  bogus_key: 1
services:
  - name: catalog
    ports: [{port: 8080, protocol: http}]
    lb_policy: nonsense
    retries: {attempts: 99}
"""


def gossamer(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GOSSAMER, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def expected_lines(path: Path) -> list[str]:
    return [
        f"{path}:4: control.bogus_key: unknown field",
        f"{path}:8: services[0].lb_policy: must be one of round_robin, random, "
        "least_request, ewma, ring_hash, got 'nonsense'",
        f"{path}:9: services[0].retries.attempts: must be between 0 and 10, got 99",
    ]


@pytest.fixture
def three(tmp_path: Path) -> Path:
    path = tmp_path / "mesh.yaml"
    path.write_text(THREE_MISTAKES)
    return path


def test_three_mistakes_three_lines_exit_1(three: Path):
    result = gossamer("validate", str(three))
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines() == expected_lines(three)
    assert result.stderr.strip() == f"{three}: 3 errors"


def test_registry_validate_is_the_same_command(three: Path):
    result = gossamer("registry", "validate", str(three))
    assert result.returncode == 1
    assert result.stdout.splitlines() == expected_lines(three)


def test_json_output_lists_the_errors(three: Path, tmp_path: Path):
    result = gossamer("validate", str(three), "--output", "json")
    assert result.returncode == 1
    errors = json.loads(result.stdout)
    assert [(e["line"], e["field"]) for e in errors] == [
        (4, "control.bogus_key"),
        (8, "services[0].lb_policy"),
        (9, "services[0].retries.attempts"),
    ]
    assert [e["text"] for e in errors] == expected_lines(three)
    assert errors[0]["message"] == "unknown field" and "api_listen" in errors[0]["hint"]
    good = tmp_path / "good.yaml"
    good.write_text("services: []\n")
    result = gossamer("validate", str(good), "-o", "json")
    assert result.returncode == 0 and json.loads(result.stdout) == []


def test_control_refuses_the_file_with_the_same_messages(three: Path):
    result = gossamer("control", "--config", str(three), timeout=30)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: {line}" for line in expected_lines(three)]
    assert "Traceback" not in result.stderr


def readme_meshes() -> list[str]:
    blocks = re.findall(r"```yaml\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    meshes = [b for b in blocks if re.match(r"(trust_domain|services|control):", b)]
    assert len(meshes) >= 2, "README.md's mesh.yaml examples are gone"
    return meshes


@pytest.mark.parametrize("index", range(2))
def test_the_readme_examples_are_valid(index: int, tmp_path: Path):
    path = tmp_path / "mesh.yaml"
    path.write_text(readme_meshes()[index])
    result = gossamer("validate", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(f"{path}: OK (")


def test_a_missing_file_and_bad_yaml(tmp_path: Path):
    result = gossamer("validate", str(tmp_path / "nope.yaml"))
    assert result.returncode == 1 and "file not found" in result.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("services:\n  - name: a\n   bad: indent\n")
    result = gossamer("validate", str(bad))
    assert result.returncode == 1
    assert result.stdout.startswith(f"{bad}:3: not valid YAML")


def test_reference_prints_the_generated_markdown():
    result = gossamer("validate", "--reference")
    assert result.returncode == 0
    assert result.stdout == reference_markdown()
    assert gossamer("validate").returncode == 2  # neither a file nor --reference
